"""Retrieval on LoCoMo or LongMemEval: Engram presets next to BM25 and dense baselines.

A thin wrapper around :func:`engram.bench.run_locomo` / :func:`engram.bench.run_longmemeval`
(the ``engram bench`` command calls the same functions). Examples::

    python benchmarks/retrieval.py locomo --data locomo10.json --out runs/locomo \\
        --preset lexical semantic hybrid --workers 4
    python benchmarks/retrieval.py longmemeval --data longmemeval_s_cleaned.json \\
        --out runs/lme-s --limit 100
    python benchmarks/retrieval.py synthetic --out runs/lme-synthetic.json  # a small test file

The output directory holds config.json, per_question.jsonl, summary.json, summary.md and
recall_vs_k_*.png; re-running with the same settings resumes where the last run stopped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from engram.bench import (
    BASELINES,
    LOCOMO_K,
    LONGMEMEVAL_K,
    make_synthetic_longmemeval,
    run_locomo,
    run_longmemeval,
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmark", choices=["locomo", "longmemeval", "synthetic"])
    parser.add_argument("--data", help="the benchmark's JSON file")
    parser.add_argument("--out", required=True, help="run directory (or file, for synthetic)")
    parser.add_argument("--preset", nargs="+", default=["hybrid"], help="Engram search presets")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES))
    parser.add_argument(
        "--embedder", default=None, help="'hash' (fake, tests only), or a model name / path"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N scorable questions")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--k", type=int, nargs="+", default=None, help="cut-offs k")
    parser.add_argument("--questions", type=int, default=12, help="synthetic: how many")
    parser.add_argument("--seed", type=int, default=0, help="synthetic: random seed")
    args = parser.parse_args(argv)
    if args.benchmark == "synthetic":
        print(make_synthetic_longmemeval(args.out, n_questions=args.questions, seed=args.seed))
        return
    if not args.data:
        parser.error("--data is required")
    run = run_locomo if args.benchmark == "locomo" else run_longmemeval
    default_k = LOCOMO_K if args.benchmark == "locomo" else LONGMEMEVAL_K
    summary = run(
        args.data,
        args.out,
        preset=args.preset,
        embedder=args.embedder,
        limit=args.limit,
        workers=args.workers,
        k_values=args.k or default_k,
        baselines=args.baselines,
        progress=True,
    )
    overall = {
        system: {level: groups.get("overall", {}) for level, groups in per_level.items()}
        for system, per_level in summary["results"].items()
    }
    print(json.dumps(overall, indent=2))


if __name__ == "__main__":
    main()
