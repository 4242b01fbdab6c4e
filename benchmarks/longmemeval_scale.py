"""How long LongMemEval runs take on this machine, before the data is here: the harness on
haystacks of LongMemEval's shape and size, cold (every text new) and warm (every text in the
embedding cache), per question.

    python benchmarks/longmemeval_scale.py --text ../shared/data/locomo/locomo_dev5.json \\
        --shape s --questions 3
    python benchmarks/longmemeval_scale.py --text ../shared/data/locomo/locomo_dev5.json \\
        --shape m --questions 1

The haystacks are written in the official format (LongMemEval_S: ~48 sessions and ~115k tokens
per question; LongMemEval_M: ~500 sessions and ~1.5M tokens), with sessions of 10 turns whose
text is random sentences of a real conversation file (``--text``, a LoCoMo file: English chat,
not lorem ipsum, so sentence splitting and the model see realistic input). Each question's
sessions are new text; one turn per question is marked as evidence, so the metrics are computed
but mean nothing. What it measures is time: the run goes through ``run_longmemeval`` (HYBRID
preset, no baselines), first with an empty embedding cache, then again with the cache warm.
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

from engram import DiskCachedEmbedder, Embedder, HashEmbedder, SentenceTransformerEmbedder
from engram.bench import run_longmemeval
from engram.bench.report import read_rows

# sessions per question, (user, assistant) words per turn: ~115k / ~1.5M tokens a question
SHAPES = {"s": (48, (75, 285)), "m": (500, (75, 285))}
TURNS_PER_SESSION = 10


def sentences(path: Path) -> list[str]:
    samples = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for sample in samples:
        for key, turns in sample["conversation"].items():
            if key.startswith("session_") and isinstance(turns, list):
                out.extend(t["text"] for t in turns if t.get("text"))
    return out


def _turn(rng: random.Random, pool: list[str], words: int) -> str:
    picked: list[str] = []
    while sum(len(s.split()) for s in picked) < words:
        picked.append(rng.choice(pool))
    return " ".join(picked)


def _item(index: int, rng: random.Random, pool: list[str], shape: str) -> dict[str, Any]:
    n_sessions, (user_words, assistant_words) = SHAPES[shape]
    sessions, ids, dates = [], [], []
    for s in range(n_sessions):
        turns = [
            {"role": "user" if t % 2 == 0 else "assistant",
             "content": _turn(rng, pool, user_words if t % 2 == 0 else assistant_words)}
            for t in range(TURNS_PER_SESSION)
        ]  # fmt: skip
        sessions.append(turns)
        ids.append(f"q{index}_s{s}")
        dates.append(f"2023/05/{1 + s % 28:02d} (Mon) 10:{s % 60:02d}")
    answer = rng.randrange(n_sessions)
    sessions[answer][0]["has_answer"] = True
    return {
        "question_id": f"scale_{index}", "question_type": "single-session-user",
        "question": "What did I say about the trip?", "answer": "x",
        "question_date": "2023/06/01 (Thu) 10:00", "haystack_session_ids": ids,
        "haystack_dates": dates, "haystack_sessions": sessions,
        "answer_session_ids": [ids[answer]],
    }  # fmt: skip


def _timed_run(
    data: Path, out: Path, cache: Path, model: Embedder
) -> tuple[float, list[dict[str, Any]]]:
    embedder = DiskCachedEmbedder(model, cache)
    start = time.perf_counter()
    run_longmemeval(data, out, preset="hybrid", embedder=embedder, baselines=())
    return time.perf_counter() - start, read_rows(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", required=True, type=Path, help="a LoCoMo file: the sentences")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="s")
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hash", action="store_true",
        help="embed with the hashing fake: the warm run (every vector from the cache) then costs "
        "what it costs with the real model, the cold one does not",
    )  # fmt: skip
    args = parser.parse_args()
    model: Embedder = HashEmbedder(384) if args.hash else SentenceTransformerEmbedder()
    rng, pool = random.Random(args.seed), sentences(args.text)
    items = [_item(i, rng, pool, args.shape) for i in range(args.questions)]
    words = [
        sum(len(t["content"].split()) for s in i["haystack_sessions"] for t in s) for i in items
    ]
    with tempfile.TemporaryDirectory() as tmp:
        data, cache = Path(tmp) / "haystacks.json", Path(tmp) / "vectors.sqlite"
        data.write_text(json.dumps(items), encoding="utf-8")
        model.embed_batch(["warm up the model"])
        cold_s, cold = _timed_run(data, Path(tmp) / "cold", cache, model)
        warm_s, warm = _timed_run(data, Path(tmp) / "warm", cache, model)
    report = {
        "shape": args.shape, "questions": args.questions, "embedder": model.name,
        "sessions_per_question": SHAPES[args.shape][0], "turns_per_session": TURNS_PER_SESSION,
        "words_per_question": statistics.median(words),
        "cold": _summary(cold_s, cold), "warm": _summary(warm_s, warm),
    }  # fmt: skip
    print(json.dumps(report, indent=2))


def _summary(seconds: float, rows: list[dict[str, Any]]) -> dict[str, float]:
    results = [r["results"]["engram:hybrid"] for r in rows]
    return {
        "run_s": round(seconds, 1),
        "index_s_per_question_median": round(statistics.median(r["index_s"] for r in results), 2),
        "query_ms_median": round(statistics.median(r["ms"] for r in results), 1),
    }


if __name__ == "__main__":
    main()
