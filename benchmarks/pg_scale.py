"""SQLite against PostgreSQL as one user's memory grows: ingest turns/s, hybrid search p50/p95,
bytes per 1k turns, and PostgreSQL's HNSW recall@10 against exact search, in one run.

The turns are the LoCoMo dev conversations cycled (real vocabulary; each pass moved on in
time), added in sessions of 20 through the public API. Their vectors come from the
deterministic hash embedder (384 dimensions), so building 100k turns costs no model time; each
search embeds its query with the bundled model as well (the cost is in the latency; the
ranking uses the hash vector, which matches the stored ones). HNSW recall: 200 stored vectors'
neighbours through the index (``exact_below=0``) against an exact scan of the same database.

    python benchmarks/pg_scale.py --data ../shared/data/locomo/locomo_dev5.json \\
        --sizes 10000,100000 --out benchmarks/results/pg-scale.json
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


def sessions(path: str, turns: int) -> Iterator[tuple[str, Any, list[dict[str, str]]]]:
    units = to_work_units(load_locomo(path).samples)
    texts = [(t.role, t.text) for u in units for s in u.sessions for t in s.turns if t.text]
    start = units[0].sessions[0].date
    for n in range(0, turns, SESSION):
        batch = [texts[(n + i) % len(texts)] for i in range(min(SESSION, turns - n))]
        messages = [
            {"role": r, "content": f"{text} (#{n + i})"} for i, (r, text) in enumerate(batch)
        ]
        yield f"s{n // SESSION}", start + timedelta(hours=n // SESSION), messages


def questions(path: str, count: int) -> list[str]:
    qs = [q.text for u in to_work_units(load_locomo(path).samples) for q in u.questions]
    return random.Random(7).sample(qs, count)


def measure(
    store: Store, embedder: QueryCost, args: argparse.Namespace, size: int
) -> dict[str, Any]:
    mem = Memory(store=store, embedder=embedder)
    start = time.perf_counter()
    for session_id, date, messages in sessions(args.data, size):
        mem.add(messages, user_id="u", session_id=session_id, session_date=date)
    ingest = time.perf_counter() - start
    asked = questions(args.data, args.queries)
    mem.search(asked[0], user_id="u")  # the first search loads the user's caches: untimed
    latencies = []
    for q in asked:
        begin = time.perf_counter()
        mem.search(q, user_id="u", limit=10)
        latencies.append(1000 * (time.perf_counter() - begin))
    stats = mem.stats(user_id="u")
    records = sum(stats.records.values())
    ordered = sorted(latencies)
    return {
        "turns": size, "records": records, "ingest_s": round(ingest, 1),
        "turns_per_s": round(size / ingest, 1),
        "search_p50_ms": round(statistics.median(latencies), 1),
        "search_p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "bytes_per_1k_turns": None if stats.size_bytes is None
        else int(stats.size_bytes * 1000 / size),
    }  # fmt: skip


def hnsw_recall(url: str, schema: str, probes: int) -> float:
    """Recall@10 of the HNSW path against exact search, on stored vectors as queries."""
    approx = PostgresStore(url, schema=schema, exact_below=0)
    exact = PostgresStore(url, schema=schema, exact_below=10**9)
    ids = [r.id for r in exact.list(RecordFilter("u", kinds=()), limit=1000, offset=0)]
    chosen = random.Random(3).sample(ids, min(probes, len(ids)))
    where = RecordFilter("u")
    found = []
    for vector in exact.get_vectors("u", chosen):
        truth = {i for i, _ in exact.vector_search(vector, where, 10)}
        got = {i for i, _ in approx.vector_search(vector, where, 10)}
        found.append(len(truth & got) / len(truth))
    approx.close()
    exact.close()
    return round(float(np.mean(found)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--out")
    args = parser.parse_args()
    embedder = QueryCost(SentenceTransformerEmbedder())
    server = start_server()
    rows: list[dict[str, Any]] = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                url = server.new_database()
                backends: dict[str, Callable[[], Store]] = {
                    "sqlite": lambda: SqliteStore(Path(tmp) / "s.db"),
                    "postgres": lambda: PostgresStore(url, schema="scale"),  # noqa: B023
                }
                for name, make in backends.items():
                    store = make()
                    row = {"backend": name, **measure(store, embedder, args, size)}
                    if isinstance(store, PostgresStore):
                        row["hnsw_recall_at_10"] = hnsw_recall(store.url, "scale", args.probes)
                    store.close()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        server.stop()
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
