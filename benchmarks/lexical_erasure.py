"""Lexical search latency, delete and forget cost, and the store's share of ingest time, on one
user's memory of N turns (LoCoMo turns cycled; the fast HashEmbedder by default, so that only the
store is timed; ``--embedder bundled`` for the ingest rate with the default model).

    python benchmarks/lexical_erasure.py --turns 20000 \
        --out benchmarks/results/lexical-erasure-20k.json

``--db PATH --user ID`` measures lexical search alone on an existing store, opened read-only
(e.g. the 200k-turn file of ``benchmarks/scale.py``, user ``scale-user``).

It uses the public API only (plus ``store.lexical_search`` and, when the store has it, the
write-ahead-log truncation ``store._scrub``), so the same script measures an older checkout for a
before/after comparison. Reports medians from one run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from engram import (
    Embedder,
    HashEmbedder,
    Memory,
    RecordFilter,
    SentenceTransformerEmbedder,
    SqliteStore,
)


def _locomo(path: Path) -> tuple[list[str], list[str]]:
    data = json.loads(path.read_text())
    texts = [
        turn["text"]
        for conv in data
        for value in conv["conversation"].values()
        if isinstance(value, list)
        for turn in value
        if "text" in turn
    ]
    return texts, [qa["question"] for conv in data for qa in conv["qa"]]


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1e3, 2),
        "p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1e3, 2),
        "max_ms": round(ordered[-1] * 1e3, 2),
    }


def build(mem: Memory, texts: list[str], turns: int, session_turns: int) -> float:
    rng = random.Random(0)
    start = time.perf_counter()
    for s in range(turns // session_turns):
        messages = [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": f"{rng.choice(texts)} ({s}.{i})",
            }
            for i in range(session_turns)
        ]
        mem.add(messages, user_id="u", session_id=f"s{s}")
    return turns / (time.perf_counter() - start)


def lexical(store: Any, user: str, questions: list[str]) -> dict[str, float]:
    times = []
    for q in questions:
        start = time.perf_counter()
        store.lexical_search(q, RecordFilter(user), 300)
        times.append(time.perf_counter() - start)
    return _ms(times)


def measure(mem: Memory, questions: list[str], args: argparse.Namespace) -> dict[str, Any]:
    store = mem.store
    searches = lexical(store, "u", questions[: args.queries])
    turns = mem.list(user_id="u", limit=args.deletes * 4, offset=100)
    deletes, truncations = [], []
    for turn in turns[::4][: args.deletes]:
        start = time.perf_counter()
        mem.delete(turn.id, user_id="u")
        deletes.append(time.perf_counter() - start)
        scrub = getattr(store, "_scrub", None)
        if scrub is not None:  # an extra truncation of an empty log: its fixed cost
            start = time.perf_counter()
            scrub()
            truncations.append(time.perf_counter() - start)
    forgets = []
    for s in range(1, 1 + args.forgets):
        start = time.perf_counter()
        mem.forget(user_id="u", session_id=f"s{s}")
        forgets.append(time.perf_counter() - start)
    start = time.perf_counter()
    mem.forget(user_id="u")
    return {
        "lexical_search_300": searches,
        "delete_turn": _ms(deletes),
        "truncate_empty_wal": _ms(truncations) if truncations else None,
        "forget_session": _ms(forgets),
        "forget_user_s": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--session-turns", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--deletes", type=int, default=20)
    parser.add_argument("--forgets", type=int, default=5)
    parser.add_argument(
        "--locomo", type=Path, default=Path("../shared/data/locomo/locomo_dev5.json")
    )
    parser.add_argument("--embedder", choices=["hash", "bundled"], default="hash")
    parser.add_argument("--ingest-only", action="store_true", help="only build and time it")
    parser.add_argument("--db", type=Path, help="measure lexical search on this store only")
    parser.add_argument("--user", default="u", help="with --db: whose memory")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts, questions = _locomo(args.locomo)
    if args.db:
        store = SqliteStore(args.db, read_only=True)
        lexical(store, args.user, questions[:10])  # warm the page cache
        result = {
            "db": str(args.db),
            "lexical_search_300": lexical(store, args.user, questions[: args.queries]),
        }
        print(json.dumps(result, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "engram.db"
        embedder: Embedder = HashEmbedder()
        if args.embedder == "bundled":
            embedder = SentenceTransformerEmbedder()
            embedder.embed_batch(["load the model before the clock starts"])
        mem = Memory(store=SqliteStore(path), embedder=embedder)
        rate = build(mem, texts, args.turns, args.session_turns)
        result: dict[str, Any] = {
            "turns": args.turns, "embedder": args.embedder,
            "ingest_turns_per_s": round(rate, 1), "file_mb": round(path.stat().st_size / 1e6, 1),
        }  # fmt: skip
        if not args.ingest_only:
            result.update(measure(mem, questions, args))
        mem.close()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
