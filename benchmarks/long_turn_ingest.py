"""Where ingest time goes for long assistant turns, and what the sentence-key policy saves.

    python benchmarks/long_turn_ingest.py --sessions 24 --repeat 2 \\
        --data ../shared/data/longmemeval/longmemeval_oracle_dev50.json

Adds the first N distinct sessions of a LongMemEval file to a fresh in-memory store through
``Memory.add`` (one call per session, the bundled model, no cache), once per sentence-key policy
and alternating, and reports the wall time, the texts embedded (split into turns and sentence
keys, by role) and the model's share of it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import engram.write.ingest as ingest
from engram import Memory
from engram.bench.longmemeval import load_longmemeval, to_pooled_unit
from engram.embed import Embedder, SentenceTransformerEmbedder, Vectors
from engram.embed.base import WrappingEmbedder

POLICIES = {
    "every sentence (before)": ingest.SentencePolicy(),
    "long assistant turns: first 4": ingest.SentencePolicy(long_words=150, long_keys=4),
}


class Timed(WrappingEmbedder):
    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.texts = 0
        self.words = 0

    def embed_batch(self, texts: Any) -> Vectors:
        start = time.perf_counter()
        out = self.inner.embed_batch(texts)
        self.seconds += time.perf_counter() - start
        self.texts += len(texts)
        self.words += sum(len(t.split()) for t in texts)
        return out


def run(sessions: Any, policy: ingest.SentencePolicy, model: Embedder) -> dict[str, Any]:
    ingest.SENTENCES = policy
    timed = Timed(model)
    start = time.perf_counter()
    with Memory.open(":memory:", embedder=timed) as memory:
        for session in sessions:
            messages = [{"role": t.role, "content": t.text, "id": t.id} for t in session.turns]
            memory.add(messages, user_id="u", session_id=session.id, session_date=session.date)
        stats = memory.stats(user_id="u")
    return {
        "wall_s": round(time.perf_counter() - start, 2),
        "model_s": round(timed.seconds, 2),
        "texts_embedded": timed.texts,
        "words_embedded": timed.words,
        "records": dict(stats.records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--sessions", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    unit = to_pooled_unit(load_longmemeval(args.data).items)
    sessions = unit.sessions[: args.sessions]
    model = SentenceTransformerEmbedder()
    model.embed_batch(["warm up"])
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in POLICIES}
    for _ in range(args.repeat):
        for name, policy in POLICIES.items():
            results[name].append(run(sessions, policy, model))
            print(name, results[name][-1]["wall_s"], "s", results[name][-1]["texts_embedded"],
                  "texts", flush=True)  # fmt: skip
    turns = sum(len(s.turns) for s in sessions)
    print(f"{len(sessions)} sessions, {turns} turns")
    for name, runs in results.items():
        best = min(runs, key=lambda r: r["wall_s"])
        print(f"| {name} | {best['wall_s']} | {best['model_s']} | {best['texts_embedded']} | "
              f"{best['words_embedded']} | {turns / best['wall_s']:.1f} |")  # fmt: skip
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"sessions": len(sessions), "turns": turns, "results": results}, handle,
                      indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
