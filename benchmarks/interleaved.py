"""An agent's pattern: store a turn pair, then search, again and again, on a store that already
holds many turns. Measures the latency of each ``add`` and of the search right after it.

    python benchmarks/ingest_search.py --sizes 10000 --dir /tmp/perf --keep   # builds the store
    python benchmarks/interleaved.py --db /tmp/perf/bench-10000.db --rounds 40

The store is copied first (the original is left as it was); the bundled model embeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from engram import Memory


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, type=Path, help="a store to copy and write to")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "interleaved.db"
        shutil.copy(args.db, db)
        user = _first_user(db)
        with Memory.open(db) as mem:
            mem.search("warm up", user_id=user)  # the model and the user's vectors, loaded once
            adds, searches = [], []
            for i in range(args.rounds):
                pair = [
                    {"role": "user", "content": f"I tried recipe number {i} with lentils today."},
                    {"role": "assistant", "content": f"Lentils are great; recipe {i} sounds good."},
                ]
                start = time.perf_counter()
                mem.add(pair, user_id=user, session_id=f"interleaved-{i}")
                adds.append(1000 * (time.perf_counter() - start))
                start = time.perf_counter()
                mem.search(f"which recipe did I try {i}?", user_id=user)
                searches.append(1000 * (time.perf_counter() - start))
    report = {"db": str(args.db), "rounds": args.rounds, "add": _percentiles(adds),
              "search_after_add": _percentiles(searches)}  # fmt: skip
    print(json.dumps(report, indent=2))


def _first_user(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT user_id FROM records LIMIT 1").fetchone()[0])


if __name__ == "__main__":
    main()
