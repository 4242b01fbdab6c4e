"""SQLite against PostgreSQL as a memory grows: ingest turns/s, hybrid search p50/p95, bytes
per 1k turns, and PostgreSQL's HNSW recall against exact search, from one run.

One build per backend grows through ``--sizes`` (10k, then 100k, ...), measured at each size:
ingest turns/s of the turns added since the size before, search latency, database size. The
turns are the LoCoMo dev conversations cycled (real vocabulary; each pass moved on in time),
added in sessions of 20 through the public API, session ``k`` to user ``k mod --users`` (one
user, or spread over 1,000). Their vectors come from the deterministic hash embedder (384
dimensions), so building 1M turns costs no model time; each search embeds its query with the
bundled model as well (the cost is in the latency; the ranking uses the hash vector, which
matches the stored ones). Searches: ``--queries`` LoCoMo questions, each for a user drawn at
random, timed after as many other questions for the same users (warm caches; no query's
vector is cached). HNSW recall (a user who has an index:
at least ``exact_below`` vectors): ``--probes`` stored vectors' 10 (and 100) nearest through
the index against an exact scan of the same database, as ids and as ann-benchmarks counts
recall (ties within 1e-3 of the k-th exact score count); ``--recall-of URL`` measures that
alone on an existing database.

    python benchmarks/pg_scale.py --data ../shared/data/locomo/locomo_dev5.json \\
        --sizes 10000,100000,210000 --users 1 --queries 100 --probes 100 \\
        --out benchmarks/results/pg-scale-1user.json
    python benchmarks/pg_scale.py --data ../shared/data/locomo/locomo_dev5.json \\
        --sizes 10000,100000,1000000 --users 1000 --out benchmarks/results/pg-scale-1000users.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from engram import HashEmbedder, Memory, RecordFilter, SentenceTransformerEmbedder, Store
from engram.bench.locomo import load_locomo, to_work_units
from engram.embed.base import Vectors
from engram.store.postgres import PostgresStore
from engram.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg import start_server  # the test server, tests/pg.py

SESSION = 20
EXACT_BELOW = 20_000  # PostgresStore's default: users below it are searched exactly


class QueryCost(HashEmbedder):
    """The hash embedder, which also runs the bundled model on every query it embeds (one
    text at a time), so a search pays the real model's cost."""

    def __init__(self, model: SentenceTransformerEmbedder) -> None:
        super().__init__(384)
        self.model = model

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 1:
            self.model.embed_batch(texts)
        return super().embed_batch(texts)


def sessions(
    path: str, turns: int, begin: int = 0
) -> Iterator[tuple[str, Any, list[dict[str, str]]]]:
    """The sessions of turns ``begin`` to ``turns`` (``begin`` a multiple of SESSION)."""
    units = to_work_units(load_locomo(path).samples)
    texts = [(t.role, t.text) for u in units for s in u.sessions for t in s.turns if t.text]
    start = units[0].sessions[0].date
    for n in range(begin, turns, SESSION):
        batch = [texts[(n + i) % len(texts)] for i in range(min(SESSION, turns - n))]
        messages = [
            {"role": r, "content": f"{text} (#{n + i})"} for i, (r, text) in enumerate(batch)
        ]
        yield f"s{n // SESSION}", start + timedelta(hours=n // SESSION), messages


def questions(path: str, count: int) -> list[str]:
    qs = [q.text for u in to_work_units(load_locomo(path).samples) for q in u.questions]
    return random.Random(7).sample(qs, count)


def grow(mem: Memory, args: argparse.Namespace, begin: int, size: int) -> float:
    """Add turns ``begin`` to ``size``; their turns/s."""
    start = time.perf_counter()
    for session_id, date, messages in sessions(args.data, size, begin):
        user = f"u{int(session_id[1:]) % args.users}"
        mem.add(messages, user_id=user, session_id=session_id, session_date=date)
    return (size - begin) / (time.perf_counter() - start)


def searches(mem: Memory, args: argparse.Namespace) -> list[float]:
    """Latencies (ms) of ``--queries`` searches, after as many others for the same users
    (untimed: the users' caches are warm, the queries' vectors are not)."""
    rng = random.Random(11)
    users = [f"u{rng.randrange(args.users)}" for _ in range(args.queries)]
    asked = questions(args.data, 2 * args.queries)
    latencies = []
    for timed, texts in ((False, asked[: args.queries]), (True, asked[args.queries :])):
        for q, user in zip(texts, users, strict=True):
            begin = time.perf_counter()
            mem.search(q, user_id=user, limit=10)
            if timed:
                latencies.append(1000 * (time.perf_counter() - begin))
    return latencies


def measure(mem: Memory, args: argparse.Namespace, begin: int, size: int) -> dict[str, Any]:
    rate = grow(mem, args, begin, size)
    return {"turns_per_s": round(rate, 1), **search_row(mem, args, size)}


def search_row(mem: Memory, args: argparse.Namespace, size: int) -> dict[str, Any]:
    latencies = sorted(searches(mem, args))
    stats = mem.stats()
    return {
        "turns": size, "users": args.users, "records": sum(stats.records.values()),
        "search_p50_ms": round(statistics.median(latencies), 1),
        "search_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "bytes_per_1k_turns": None if stats.size_bytes is None
        else int(stats.size_bytes * 1000 / size),
    }  # fmt: skip


def build_indexes(url: str, users: int) -> float:
    """Build the HNSW index of every user over ``EXACT_BELOW`` vectors at once (the bulk route:
    the turns were added with ``vector_index=False``); the seconds it took."""
    import psycopg

    from engram.store.postgres import hnsw

    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '8GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        conn.execute("SET engram.all_users = 'on'")  # row-level security: read every user
        big = conn.execute(
            "SELECT user_id FROM scale.records WHERE embedding IS NOT NULL "
            "GROUP BY user_id HAVING count(*) >= %s",
            (EXACT_BELOW,),
        ).fetchall()
        for (user,) in big:
            if not hnsw.ensure(conn, "scale", user, 384):
                raise RuntimeError(f"the HNSW index of {user} was not built")
    return time.perf_counter() - start


def drop_indexes(url: str) -> None:
    """Drop every user's HNSW index (a level before made them): PostgreSQL maintains an index
    on every insert whether or not the store would build one."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        names = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'scale' "
            "AND indexname LIKE 'records\\_hnsw\\_%'"
        ).fetchall()
        for (name,) in names:
            conn.execute(f'DROP INDEX CONCURRENTLY scale."{name}"')


def bulk_level(
    name: str,
    open_mem: Callable[[bool], Memory],
    url: str,
    args: argparse.Namespace,
    begin: int,
    size: int,
) -> dict[str, Any]:
    """A level grown the bulk route: up to ``size - --tail`` without vector indexes (their
    turns/s: ``bulk_turns_per_s``), the indexes built at once (``index_build_s``), then the
    last ``--tail`` turns added with the indexes maintained: ``turns_per_s``."""
    if name == "postgres":
        drop_indexes(url)
    mem = open_mem(False)
    bulk = grow(mem, args, begin, size - args.tail)
    mem.close()
    built = build_indexes(url, args.users) if name == "postgres" else None
    mem = open_mem(True)
    rate = grow(mem, args, size - args.tail, size)
    row = {
        "bulk_turns_per_s": round(bulk, 1), "index_build_s": built and round(built, 1),
        "turns_per_s": round(rate, 1), "tail_turns": args.tail, **search_row(mem, args, size),
    }  # fmt: skip
    mem.close()
    return row


TIE = 1e-3  # ann-benchmarks' epsilon: a hit within this of the k-th exact score counts


def hnsw_recall(url: str, schema: str, probes: int, user: str = "u0") -> dict[str, float]:
    """Recall@10 and @100 of the HNSW path (``user``) against exact search, with stored
    vectors as queries: of the ids (``hnsw_recall_at_k``) and, as ann-benchmarks counts it,
    of the hits whose exact score is within ``TIE`` of the k-th exact score
    (``hnsw_tie_recall_at_k``: near-duplicate texts make near-equal scores, and which of them
    make the top k is then a coin toss that ids count as misses)."""
    approx = PostgresStore(url, schema=schema)
    exact = PostgresStore(url, schema=schema, exact_below=10**9)
    ids = [r.id for r in exact.list(RecordFilter(user, kinds=()), limit=1000, offset=0)]
    chosen = random.Random(3).sample(ids, min(probes, len(ids)))
    where = RecordFilter(user)
    found: dict[str, list[float]] = {}
    for vector in exact.get_vectors(user, chosen):
        truth = exact.vector_search(vector, where, 100)
        for k in (10, 100):
            got = approx.vector_search(vector, where, k)
            top = {i for i, _ in truth[:k]}
            kth = truth[min(k, len(truth)) - 1][1]
            found.setdefault(f"hnsw_recall_at_{k}", []).append(
                len(top & {i for i, _ in got}) / len(top)
            )
            # the returned scores are full precision (re-scored): the exact ones
            within = sum(1 for _, score in got if score >= kth - TIE)
            found.setdefault(f"hnsw_tie_recall_at_{k}", []).append(min(within, len(top)) / len(top))
    approx.close()
    exact.close()
    return {name: round(float(np.mean(v)), 4) for name, v in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="LoCoMo file (required unless --recall-of)")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--shared-buffers", default="2GB", help="PostgreSQL's shared_buffers")
    parser.add_argument(
        "--tail", type=int, default=0,
        help="the bulk route: grow each level without vector indexes up to its last --tail "
        "turns, build the indexes at once, time the ingest of those last turns",
    )  # fmt: skip
    parser.add_argument("--out")
    parser.add_argument(
        "--recall-of", metavar="URL",
        help="only measure the HNSW recall of --recall-user in this database (schema 'scale')",
    )  # fmt: skip
    parser.add_argument("--recall-user", default="u0")
    args = parser.parse_args()
    if args.recall_of:
        print(json.dumps(hnsw_recall(args.recall_of, "scale", args.probes, args.recall_user)))
        return
    if not args.data:
        parser.error("--data is required")
    embedder = QueryCost(SentenceTransformerEmbedder())
    server = start_server({"shared_buffers": args.shared_buffers, "maintenance_work_mem": "1GB"})
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = server.new_database()

            def opener(name: str) -> Callable[[bool], Memory]:
                def open_mem(indexed: bool) -> Memory:
                    store: Store = (
                        SqliteStore(Path(tmp) / "s.db") if name == "sqlite"
                        else PostgresStore(url, schema="scale", vector_index=indexed)
                    )  # fmt: skip
                    return Memory(store=store, embedder=embedder)

                return open_mem

            begin = 0
            for size in (int(s) for s in args.sizes.split(",")):
                for name in ("postgres", "sqlite"):
                    # one Memory per backend and level: the other backend's caches are freed
                    if args.tail and size - args.tail > begin:
                        row = {"backend": name, **bulk_level(
                            name, opener(name), url, args, begin, size)}  # fmt: skip
                    else:
                        mem = opener(name)(True)
                        row = {"backend": name, **measure(mem, args, begin, size)}
                        mem.close()
                    if name == "postgres" and row["records"] // args.users >= EXACT_BELOW:
                        row.update(hnsw_recall(url, "scale", args.probes))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if args.out:  # after each row: a long run that is stopped keeps its rows
                        Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
                begin = size
    finally:
        server.stop()


if __name__ == "__main__":
    main()
