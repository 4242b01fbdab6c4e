"""What a model switch costs: ``Memory.reembed`` of a store of N LoCoMo turns, time split into
reading the store, the model, and the swap transaction; and the search results after it equal
those of a store built with the new model from the start.

    python benchmarks/reembed.py --data ../shared/data/locomo/locomo_dev5.json --turns 10000 \\
        --to bundled --out benchmarks/results/reembed.json

The store is built with the hash embedder (LoCoMo dev turns cycled, sessions of 20, one user,
through ``Memory.add``), then re-indexed with ``--to`` (an embedder spec); a second store is
built with ``--to`` directly, and ``--queries`` LoCoMo questions are searched in both
(``HYBRID``, top 10): the hits must be the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engram import HashEmbedder, Memory, SqliteStore
from engram.config import make_embedder
from engram.embed import Embedder, Vectors
from engram.embed.base import WrappingEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pg_scale import questions, sessions  # the same turns and questions


class Timed(WrappingEmbedder):
    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.seconds = 0.0

    def embed_batch(self, texts: Any) -> Vectors:
        start = time.perf_counter()
        out = self.inner.embed_batch(texts)
        self.seconds += time.perf_counter() - start
        return out


def build(path: Path, embedder: Embedder, args: argparse.Namespace) -> Memory:
    mem = Memory(store=SqliteStore(path), embedder=embedder)
    for session_id, date, messages in sessions(args.data, args.turns):
        mem.add(messages, user_id="u0", session_id=session_id, session_date=date)
    return mem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="LoCoMo file")
    parser.add_argument("--turns", type=int, default=10000)
    parser.add_argument("--to", default="bundled", help="the new embedder's spec")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mem = build(Path(tmp) / "old.db", HashEmbedder(384), args)
        new = Timed(make_embedder(args.to))
        swap = {"seconds": 0.0}
        replace = mem.store.replace_vectors

        def timed_replace(*a: Any) -> Any:
            start = time.perf_counter()
            try:
                return replace(*a)
            finally:
                swap["seconds"] += time.perf_counter() - start

        mem.store.replace_vectors = timed_replace  # type: ignore[method-assign]
        report = mem.reembed(new)
        fresh = build(Path(tmp) / "new.db", new.inner, args)
        asked = questions(args.data, args.queries)
        same = sum(
            [h.record.id for h in mem.search(q, user_id="u0")]
            == [h.record.id for h in fresh.search(q, user_id="u0")]
            for q in asked
        )
        row = {
            "turns": args.turns, "to": args.to, **vars(report),
            "model_s": round(new.seconds, 1), "swap_s": round(swap["seconds"], 2),
            "read_and_other_s": round(report.seconds - new.seconds - swap["seconds"], 1),
            "records_per_s": round(report.records / report.seconds, 1),
            "same_top10": f"{same}/{len(asked)}",
        }  # fmt: skip
        mem.close()
        fresh.close()
    print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
