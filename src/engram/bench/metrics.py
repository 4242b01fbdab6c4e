"""Retrieval metrics, as the benchmarks' authors define them. Pure functions.

LongMemEval (xiaowu0162/LongMemEval, ``src/retrieval/eval_utils.py``), for a ranking of ids and
the set of correct ids, at cut-off ``k``:

- ``recall_any@k`` = 1 if any correct id is in the top k, else 0;
- ``recall_all@k`` = 1 if every correct id is in the top k, else 0 (1 when there are none, as
  ``all([])`` is in the reference code);
- ``ndcg_any@k`` = DCG of the top k / DCG of the ideal top k, with binary relevance and
  ``DCG = rel_1 + sum_{i>=2} rel_i / log2(i)`` (ranks 1 and 2 are both undiscounted, exactly as
  the reference ``dcg`` computes it); 0 when there is no correct id.

The reference evaluates a full ranking of the corpus; a truncated ranking gives the same values
for every ``k`` up to its length. The ideal ranking puts all correct ids first, so the number of
correct ids stands for the corpus's relevance list.

LoCoMo evidence recall: ``|evidence ∩ top-k ids| / |evidence|`` per question, averaged over the
questions of each category and overall; adversarial questions (category 5) and questions without
valid evidence are excluded by the caller.

Rankings are de-duplicated (first occurrence kept) before scoring.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from engram.bench.corpus import dedupe

__all__ = [
    "RetrievalScores",
    "aggregate",
    "dcg",
    "evaluate_retrieval",
    "evidence_recall",
    "ndcg_any",
    "recall_all",
    "recall_any",
    "sessions_from_turns",
]


@dataclass(frozen=True)
class RetrievalScores:
    recall_any: float
    recall_all: float
    ndcg_any: float


def dcg(relevances: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` relevances (reference formula)."""
    top = list(relevances)[:k]
    if not top:
        return 0.0
    return float(top[0]) + sum(float(rel) / math.log2(i) for i, rel in enumerate(top[1:], 2))


def recall_any(ranked: Sequence[str], correct: Collection[str], k: int) -> float:
    top = set(dedupe(ranked)[:k])
    return 1.0 if any(doc in top for doc in correct) else 0.0


def recall_all(ranked: Sequence[str], correct: Collection[str], k: int) -> float:
    top = set(dedupe(ranked)[:k])
    return 1.0 if all(doc in top for doc in correct) else 0.0


def ndcg_any(ranked: Sequence[str], correct: Collection[str], k: int) -> float:
    wanted = set(correct)
    ideal = dcg([1.0] * len(wanted), k)
    if ideal == 0.0:
        return 0.0
    actual = dcg([1.0 if doc in wanted else 0.0 for doc in dedupe(ranked)], k)
    return actual / ideal


def evaluate_retrieval(ranked: Sequence[str], correct: Collection[str], k: int) -> RetrievalScores:
    """The three LongMemEval retrieval metrics at ``k``."""
    return RetrievalScores(
        recall_any=recall_any(ranked, correct, k),
        recall_all=recall_all(ranked, correct, k),
        ndcg_any=ndcg_any(ranked, correct, k),
    )


def evidence_recall(ranked: Sequence[str], evidence: Collection[str], k: int) -> float:
    """LoCoMo: the share of the evidence ids found in the top ``k``."""
    wanted = set(evidence)
    if not wanted:
        raise ValueError("evidence_recall needs at least one evidence id")
    return len(wanted.intersection(dedupe(ranked)[:k])) / len(wanted)


def sessions_from_turns(ranked_turns: Sequence[str], session_of: Mapping[str, str]) -> list[str]:
    """A session ranking from a turn ranking: each session at the rank of its best turn.

    The recall values at ``k`` on this list equal those of the reference
    ``evaluate_retrieval_turn2session`` (which widens k until the top holds k distinct sessions);
    its ndcg differs, as the reference scores every turn of a correct session as relevant.
    Turns missing from ``session_of`` are skipped.
    """
    return dedupe(session_of[t] for t in ranked_turns if t in session_of)


def aggregate(
    rows: Iterable[tuple[str, Mapping[str, float]]], overall: str = "overall"
) -> dict[str, dict[str, float]]:
    """Mean of each metric per group and over all rows (each question weighs the same).

    ``rows`` are ``(group, {metric: value})``; every group's entry also holds ``n``.
    Groups are sorted; ``overall`` comes first.
    """
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, int] = defaultdict(int)
    for group, metrics in rows:
        for name in (group, overall):
            counts[name] += 1
            for metric, value in metrics.items():
                sums[name][metric] += value
    ordered = [overall, *sorted(g for g in counts if g != overall)] if counts else []
    result: dict[str, dict[str, float]] = {}
    for name in ordered:
        entry = {metric: total / counts[name] for metric, total in sums[name].items()}
        entry["n"] = counts[name]
        result[name] = entry
    return result
