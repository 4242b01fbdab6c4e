"""The benchmark metrics on hand-computed cases, and against a brute-force oracle written from the
LongMemEval definitions (binary relevance; ranks 1 and 2 undiscounted, rank r >= 3 by log2 r)."""

from __future__ import annotations

import math
import random

import pytest

from engram.bench.metrics import (
    aggregate,
    dcg,
    evaluate_retrieval,
    evidence_recall,
    ndcg_any,
    recall_all,
    recall_any,
    sessions_from_turns,
)

LOG2_3 = math.log2(3)


def test_dcg_hand_computed() -> None:
    assert dcg([], 5) == 0.0
    assert dcg([1, 0, 1], 3) == pytest.approx(1 + 1 / LOG2_3)
    assert dcg([0, 1], 2) == pytest.approx(1.0)  # rank 2 is not discounted (log2 2 = 1)
    assert dcg([0, 0, 0, 1], 4) == pytest.approx(0.5)  # log2 4 = 2
    assert dcg([1, 1, 1, 1], 2) == pytest.approx(2.0)  # cut at k


def test_recall_any_and_all() -> None:
    ranked = ["a", "x", "b", "y"]
    assert recall_any(ranked, {"a", "b"}, 1) == 1.0
    assert recall_all(ranked, {"a", "b"}, 1) == 0.0
    assert recall_all(ranked, {"a", "b"}, 2) == 0.0
    assert recall_all(ranked, {"a", "b"}, 3) == 1.0
    assert recall_any(ranked, {"z"}, 4) == 0.0
    assert recall_any(["x"], {"a"}, 10) == 0.0  # a ranking shorter than k


def test_ndcg_hand_computed() -> None:
    # actual 1 + 0 + 1/log2(3); ideal 1 + 1
    assert ndcg_any(["a", "x", "b"], {"a", "b"}, 3) == pytest.approx((1 + 1 / LOG2_3) / 2)
    assert ndcg_any(["x", "a"], {"a"}, 2) == pytest.approx(1.0)
    assert ndcg_any(["x", "y", "a"], {"a"}, 3) == pytest.approx(1 / LOG2_3)
    assert ndcg_any(["x", "a"], {"a"}, 1) == 0.0
    # two correct ids, one found at rank 4: (1/2) / (1 + 1)
    assert ndcg_any(["x", "y", "z", "a"], {"a", "b"}, 4) == pytest.approx(0.25)


def test_no_correct_ids_behave_like_the_reference() -> None:
    scores = evaluate_retrieval(["a", "b"], set(), 2)
    assert (scores.recall_any, scores.recall_all, scores.ndcg_any) == (0.0, 1.0, 0.0)


def test_duplicates_in_a_ranking_count_once() -> None:
    assert recall_all(["a", "a", "b"], {"a", "b"}, 2) == 1.0  # ranked as ["a", "b"]
    assert recall_all(["a", "a", "b"], {"a", "b"}, 1) == 0.0
    assert ndcg_any(["a", "a", "b"], {"a", "b"}, 2) == pytest.approx(1.0)


def _oracle(order: list[int], relevant: set[int], k: int) -> tuple[float, float, float]:
    """Written from the definitions, over a full permutation of document indices."""
    top = order[:k]
    r_any = 1.0 if relevant & set(top) else 0.0
    r_all = 1.0 if relevant <= set(top) else 0.0

    def gain(rels: list[int]) -> float:
        return sum(rel / max(1.0, math.log2(rank)) for rank, rel in enumerate(rels, 1))

    actual = gain([1 if d in relevant else 0 for d in top])
    ideal = gain([1] * min(len(relevant), k))
    return r_any, r_all, (actual / ideal if ideal else 0.0)


def test_matches_oracle_on_random_rankings() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 40)
        order = list(range(n))
        rng.shuffle(order)
        relevant = set(rng.sample(range(n), rng.randint(0, min(n, 4))))
        k = rng.choice([1, 3, 5, 10, 30, 50])
        ids = [f"d{i}" for i in order]
        got = evaluate_retrieval(ids, {f"d{i}" for i in relevant}, k)
        want = _oracle(order, relevant, k)
        assert got.recall_any == want[0]
        assert got.recall_all == want[1]
        assert got.ndcg_any == pytest.approx(want[2])


def test_evidence_recall() -> None:
    ranked = ["D1:1", "D2:3", "D1:2"]
    assert evidence_recall(ranked, ["D1:2", "D9:9"], 2) == 0.0
    assert evidence_recall(ranked, ["D1:2", "D9:9"], 3) == 0.5
    assert evidence_recall(ranked, ["D1:1", "D2:3"], 2) == 1.0
    assert evidence_recall(ranked, ["D2:3"], 1) == 0.0
    assert evidence_recall(["D1:1", "D1:1", "D2:3"], ["D2:3"], 2) == 1.0
    with pytest.raises(ValueError):
        evidence_recall(ranked, [], 5)


def test_sessions_from_turns_ranks_each_session_by_its_best_turn() -> None:
    session_of = {"s1:1": "s1", "s1:2": "s1", "s2:1": "s2", "s3:4": "s3"}
    ranked = ["s2:1", "s1:2", "s2:9", "s1:1", "s3:4"]
    assert sessions_from_turns(ranked, session_of) == ["s2", "s1", "s3"]


def test_aggregate_means_per_group_and_overall() -> None:
    rows = [
        ("2", {"recall@1": 1.0, "recall@5": 1.0}),
        ("1", {"recall@1": 0.0, "recall@5": 0.5}),
        ("1", {"recall@1": 0.0, "recall@5": 1.0}),
        ("4", {"recall@1": 1.0, "recall@5": 1.0}),
    ]
    out = aggregate(rows)
    assert list(out) == ["overall", "1", "2", "4"]
    assert out["overall"] == {"recall@1": 0.5, "recall@5": 0.875, "n": 4}
    assert out["1"] == {"recall@1": 0.0, "recall@5": 0.75, "n": 2}
    assert out["2"]["n"] == 1
    assert aggregate([]) == {}
