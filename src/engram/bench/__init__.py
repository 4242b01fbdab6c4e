"""Benchmark harness: LoCoMo and LongMemEval loaders, the official retrieval metrics, a runner
that drives Engram through its public API next to BM25 and dense baselines, and run reports.

>>> from engram.bench import run_locomo
>>> summary = run_locomo("locomo10.json", "runs/locomo", preset=["lexical", "hybrid"])
>>> summary["results"]["engram:hybrid"]["turn"]["overall"]["recall@10"]
"""

from engram.bench.locomo import LocomoDataset, load_locomo
from engram.bench.longmemeval import LongMemEvalDataset, load_longmemeval
from engram.bench.metrics import (
    RetrievalScores,
    aggregate,
    dcg,
    evaluate_retrieval,
    evidence_recall,
    ndcg_any,
    recall_all,
    recall_any,
)
from engram.bench.runner import LOCOMO_K, LONGMEMEVAL_K, run_locomo, run_longmemeval
from engram.bench.synthetic import make_synthetic_longmemeval
from engram.bench.systems import BASELINES

__all__ = [
    "BASELINES",
    "LOCOMO_K",
    "LONGMEMEVAL_K",
    "LocomoDataset",
    "LongMemEvalDataset",
    "RetrievalScores",
    "aggregate",
    "dcg",
    "evaluate_retrieval",
    "evidence_recall",
    "load_locomo",
    "load_longmemeval",
    "make_synthetic_longmemeval",
    "ndcg_any",
    "recall_all",
    "recall_any",
    "run_locomo",
    "run_longmemeval",
]
