"""Rank fusion and scoring: pure functions over ids and numbers."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "addressed_role",
    "asks_question",
    "mask_names",
    "minmax",
    "question_factor",
    "recency_factor",
    "role_factor",
    "rrf",
    "speaker_factor",
    "weighted_fusion",
    "words",
]


def _sorted(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """Best first; ties broken by id so results are deterministic."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def rrf(
    rankings: Mapping[str, Sequence[str]],
    *,
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """Reciprocal rank fusion (Cormack et al., 2009): ``sum_r w_r / (k + rank_r(d))`` with
    1-based ranks. ``rankings`` maps a retriever name to its ids, best first."""
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return _sorted(scores)


def minmax(scores: Mapping[str, float]) -> dict[str, float]:
    """Scale scores to [0, 1]; all-equal scores become 1."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return {doc: 1.0 for doc in scores}
    return {doc: (s - lo) / (hi - lo) for doc, s in scores.items()}


def weighted_fusion(
    scores: Mapping[str, Mapping[str, float]],
    *,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[str, float]]:
    """Convex combination of min-max normalised scores; a retriever that did not return a doc
    contributes 0 for it."""
    fused: dict[str, float] = {}
    for name, per_doc in scores.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        for doc, s in minmax(per_doc).items():
            fused[doc] = fused.get(doc, 0.0) + w * s
    return _sorted(fused)


def recency_factor(age_days: float, *, weight: float, half_life_days: float) -> float:
    """``1 + weight * 0.5 ** (age / half_life)``; ages in the future count as 0."""
    if weight == 0.0:
        return 1.0
    return 1.0 + weight * math.pow(0.5, max(age_days, 0.0) / half_life_days)


_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> frozenset[str]:
    """The set of lower-cased word tokens of ``text``."""
    return frozenset(_WORD.findall(text.lower()))


def speaker_factor(query_words: frozenset[str], speaker: str | None, *, weight: float) -> float:
    """``1 + weight`` when the query names the turn's speaker (every word of the name appears in
    the query), else 1: "what did Melanie paint?" is best answered by what Melanie said, not by
    what others said to her."""
    if weight == 0.0 or not speaker:
        return 1.0
    name = words(speaker)
    return 1.0 + weight if name and name <= query_words else 1.0


def asks_question(text: str) -> bool:
    """Whether a turn ends by asking a question."""
    return text.rstrip().endswith("?")


def question_factor(text: str, *, penalty: float) -> float:
    """``1 - penalty`` for a turn that asks a question, else 1: "What's your best camping
    memory?" shares the words of a question about camping but rarely holds its answer."""
    return 1.0 - penalty if penalty and asks_question(text) else 1.0


def mask_names(text: str, names: Iterable[str], *, mask: str = "the person") -> str:
    """``text`` with every word of the given names (and its possessive) replaced by ``mask``:
    "What did Melanie paint?" -> "What did the person paint?". Case-sensitive, so that a speaker
    called "May" or "Will" leaves "may" and "will" alone. Used on the query the embedding
    retrievers see: keys carry their speaker's name, so a name in the embedded query pulls in
    every turn by or to that person, while the speaker factor already favours their turns."""
    parts = sorted({w for name in names for w in _WORD.findall(name) if len(w) > 1}, key=len)
    if not parts:
        return text
    pattern = r"\b(?:" + "|".join(re.escape(w) for w in reversed(parts)) + r")(?:'s)?\b"
    return re.sub(r"\s+", " ", re.sub(pattern, mask, text)).strip()


_FIRST_PERSON = frozenset({"i", "me", "my", "mine", "myself"})
_SECOND_PERSON = frozenset({"you", "your", "yours", "yourself"})


def addressed_role(query_words: frozenset[str]) -> str | None:
    """Whose turns a question asks about, from its pronouns: ``"user"`` for a question in the
    first person only ("How many fitness classes do I attend?": what the user said about
    themselves), ``"assistant"`` for one in the second person only ("What did you recommend?"),
    else None (both, as in "you told me", or neither, as in "What did Melanie paint?")."""
    first = not query_words.isdisjoint(_FIRST_PERSON)
    second = not query_words.isdisjoint(_SECOND_PERSON)
    if first == second:
        return None
    return "user" if first else "assistant"


def role_factor(role: str | None, wanted: str | None, *, weight: float) -> float:
    """``1 + weight`` for a turn spoken in the role the question asks about, else 1."""
    return 1.0 + weight if weight and wanted is not None and role == wanted else 1.0
