"""Fusion and scoring are pure functions, checked against straightforward reference code."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from engram.read import aggregate_sessions, minmax, recency_factor, rrf, weighted_fusion
from engram.read.fusion import addressed_role, role_factor, words
from engram.types import Hit, MemoryRecord, RecordKind


def reference_rrf(rankings: dict[str, list[str]], k: int, weights: dict[str, float]) -> dict:
    """Cormack, Clarke & Buettcher (2009), written out the long way."""
    docs = {d for ranking in rankings.values() for d in ranking}
    out = {}
    for d in docs:
        total = 0.0
        for name, ranking in rankings.items():
            if d in ranking:
                total += weights.get(name, 1.0) / (k + ranking.index(d) + 1)
        out[d] = total
    return out


@pytest.mark.parametrize("seed", range(20))
def test_rrf_matches_reference(seed: int) -> None:
    rng = random.Random(seed)
    pool = [f"d{i}" for i in range(30)]
    rankings = {name: rng.sample(pool, rng.randint(0, 20)) for name in ("a", "b", "c")}
    weights = {"a": rng.uniform(0.1, 2), "b": 1.0, "c": rng.uniform(0.1, 2)}
    k = rng.choice([0, 1, 10, 60])
    got = rrf(rankings, k=k, weights=weights)
    want = reference_rrf(rankings, k, weights)
    assert {d for d, _ in got} == set(want)
    for doc, score in got:
        assert math.isclose(score, want[doc], rel_tol=1e-12)
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)


def test_rrf_known_values_and_tie_break() -> None:
    got = rrf({"x": ["a", "b"], "y": ["b", "a"]}, k=60)
    assert math.isclose(got[0][1], 1 / 61 + 1 / 62)
    assert math.isclose(got[0][1], got[1][1])
    assert [d for d, _ in got] == ["a", "b"]  # equal scores: ordered by id
    assert rrf({"x": ["a", "b", "c"]}, k=0) == [("a", 1.0), ("b", 0.5), ("c", 1 / 3)]


def test_minmax_and_weighted_fusion() -> None:
    assert minmax({}) == {}
    assert minmax({"a": 3.0, "b": 3.0}) == {"a": 1.0, "b": 1.0}
    assert minmax({"a": 1.0, "b": 3.0, "c": 2.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    fused = dict(
        weighted_fusion(
            {"lex": {"a": 10.0, "b": 0.0}, "vec": {"b": 0.9, "c": 0.5}},
            weights={"lex": 2.0, "vec": 1.0},
        )
    )
    assert fused == {"a": 2.0, "b": 1.0, "c": 0.0}


def test_recency_factor() -> None:
    assert recency_factor(100.0, weight=0.0, half_life_days=30) == 1.0
    assert recency_factor(0.0, weight=0.5, half_life_days=30) == 1.5
    assert math.isclose(recency_factor(30.0, weight=0.5, half_life_days=30), 1.25)
    assert recency_factor(-5.0, weight=0.5, half_life_days=30) == 1.5  # future counts as now


def _hit(session: str, score: float, i: int) -> Hit:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    record = MemoryRecord(
        id=f"r{i}", kind=RecordKind.TURN, text="t", user_id="u", session_id=session,
        agent_id=None, role="user", name=None, seq=i, timestamp=now, created_at=now,
    )  # fmt: skip
    return Hit(record=record, score=score)


def test_aggregate_sessions_max_and_sum() -> None:
    hits = [_hit("s1", 0.9, 1), _hit("s2", 0.5, 2), _hit("s2", 0.45, 3), _hit("s1", 0.1, 4)]
    by_max = aggregate_sessions(hits, method="max")
    assert [(s.session_id, s.score) for s in by_max] == [("s1", 0.9), ("s2", 0.5)]
    by_sum = aggregate_sessions(hits, method="sum", top=2)
    assert [s.session_id for s in by_sum] == ["s1", "s2"]
    assert math.isclose(by_sum[1].score, 0.95)
    assert [h.record.id for h in by_sum[0].hits] == ["r1", "r4"]


@pytest.mark.parametrize(
    ("query", "role"),
    [
        ("How many fitness classes do I attend in a typical week?", "user"),
        ("What did I buy 10 days ago?", "user"),
        ("Where is my hotel?", "user"),
        ("What did you recommend for the trip?", "assistant"),
        ("You told me about a bakery, what was it called?", None),  # both persons
        ("What did Melanie paint?", None),
        ("", None),
    ],
)
def test_addressed_role(query: str, role: str | None) -> None:
    assert addressed_role(words(query)) == role


def test_role_factor() -> None:
    assert role_factor("user", "user", weight=0.5) == 1.5
    assert role_factor("assistant", "user", weight=0.5) == 1.0
    assert role_factor(None, "user", weight=0.5) == 1.0
    assert role_factor("user", None, weight=0.5) == 1.0
    assert role_factor("user", "user", weight=0.0) == 1.0
