"""What fact extraction costs: LLM calls, tokens and time per 100 turns, by batch size.

The first N turns of a LoCoMo conversation (whole sessions, in order) are added with
``extract="background"`` and the queue processed once per batch size, each run in a fresh
store, through the public API only (``Memory.add``, ``Memory.process_pending``,
``Memory.stats``). Any OpenAI-compatible endpoint works; the figures in docs/llm.md come from
llama.cpp's server with SmolLM2-135M (scripts/provision-llama.sh):

    .venv-llama/bin/python -m llama_cpp.server \\
        --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --port 18080 --n_ctx 8192 &
    python benchmarks/llm_cost.py --data ../shared/data/locomo/locomo_dev5.json \\
        --llm http://127.0.0.1:18080/v1 --model smollm2 --turns 100 --batch 5,10,20,50 \\
        --out benchmarks/results/llm-cost.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engram import Memory, SqliteStore
from engram.bench.locomo import load_locomo
from engram.config import Settings, make_embedder
from engram.llm import LLMSettings, make_llm


def sessions(path: str, turns: int) -> list[tuple[str, Any, list[dict[str, Any]]]]:
    """Whole sessions of the first conversation until ``turns`` turns are reached."""
    conversation = load_locomo(path).samples[0].conversation
    out: list[tuple[str, Any, list[dict[str, Any]]]] = []
    taken = 0
    for session in conversation.sessions:
        if taken >= turns:
            break
        messages = [
            {"role": "user" if t.speaker == conversation.speaker_a else "assistant",
             "content": t.text, "name": t.speaker, "id": t.dia_id}
            for t in session.turns[: turns - taken]
        ]  # fmt: skip
        taken += len(messages)
        out.append((session.session_id, session.date, messages))
    return out


def run(args: argparse.Namespace, batch: int, data: list[Any], embedder: Any) -> dict[str, Any]:
    llm = make_llm(LLMSettings.load(base_url=args.llm, model=args.model, timeout=args.timeout,
                                    max_tokens=args.max_tokens))  # fmt: skip
    assert llm is not None
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(store=SqliteStore(Path(tmp) / "m.db"), embedder=embedder, llm=llm,
                     extract="background", extraction_batch=batch)  # fmt: skip
        turns = 0
        for session_id, date, messages in data:
            turns += len(mem.add(messages, user_id="u", session_id=session_id, session_date=date))
        start = time.perf_counter()
        report = mem.process_pending(limit=1000)
        seconds = time.perf_counter() - start
        stats = mem.stats(user_id="u")
        mem.close()
    usage = stats.llm.get("extract", {})
    per100 = 100 / turns
    return {
        "batch": batch, "turns": turns, "jobs": len(report.jobs), "failed_jobs": report.failed,
        "facts": stats.records.get("fact", 0),
        "rejected": sum(j.rejected for j in report.jobs),
        "actions": {v: report.count(v) for v in ("ADD", "MERGE", "NOOP", "UPDATE", "SUPERSEDE")},
        "calls": usage.get("calls", 0), "failed_calls": usage.get("failed", 0),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "calls_per_100_turns": round(usage.get("calls", 0) * per100, 1),
        "tokens_per_100_turns": round(
            (usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)) * per100
        ),
        "seconds": round(seconds, 1), "seconds_per_100_turns": round(seconds * per100, 1),
        "errors": [j.error for j in report.jobs if j.error][:3],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a LoCoMo JSON file")
    parser.add_argument("--llm", required=True, help="an OpenAI-compatible base URL")
    parser.add_argument("--model", required=True)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--batch", default="10,20,50", help="batch sizes, comma-separated")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--max-tokens", type=int, default=600)
    parser.add_argument("--embedder", default="bundled")
    parser.add_argument("--out", help="write the results here (JSON)")
    args = parser.parse_args(argv)
    data = sessions(args.data, args.turns)
    embedder = make_embedder(args.embedder, Settings())
    results = [run(args, int(b), data, embedder) for b in args.batch.split(",")]
    doc = {"llm": args.llm, "model": args.model, "data": args.data, "embedder": embedder.name,
           "max_tokens": args.max_tokens, "results": results}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print("| batch | turns | calls /100 turns | tokens /100 turns | s /100 turns | facts "
          "| rejected | failed jobs |")  # fmt: skip
    print("| --- " * 8 + "|")
    for r in results:
        print(f"| {r['batch']} | {r['turns']} | {r['calls_per_100_turns']} | "
              f"{r['tokens_per_100_turns']} | {r['seconds_per_100_turns']} | {r['facts']} | "
              f"{r['rejected']} | {r['failed_jobs']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
