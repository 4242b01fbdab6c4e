"""Retrieval is configured by data: a frozen :class:`SearchConfig` and named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from engram.errors import InvalidInputError
from engram.types import RecordKind

__all__ = ["HYBRID", "LEXICAL", "PRESETS", "SEMANTIC", "SearchConfig", "resolve_config"]

Fusion = Literal["rrf", "weighted"]
Aggregation = Literal["max", "sum"]


@dataclass(frozen=True)
class SearchConfig:
    """How to search.

    - ``lexical`` / ``semantic``: which retrievers run (BM25 with the user's own statistics;
      cosine over vectors), over the keys of ``key_kinds``.
    - ``sentence``: a third retriever, cosine at sentence level: over sentence keys (each
      sentence of a turn that has several) and turns (a one-sentence turn is its own sentence);
      a turn scores its best sentence.
    - ``key_kinds``: which records serve as index keys; a key's hit counts for the turns it
      points to (a round key points to its user and assistant turns, a fact to the turns it
      was extracted from; retired facts are keys only for a search ``as_of`` their time).
    - ``candidates``: how many keys each retriever returns before fusion.
    - ``key_decay``: how a turn's score adds up over the keys that found it, best first:
      ``s1 + d * s2 + d**2 * s3 ...`` (0: its best key alone).
    - ``fusion``: ``"rrf"`` (reciprocal rank fusion, constant ``rrf_k``) or ``"weighted"``
      (min-max normalised scores); ``weights`` per retriever name for either.
    - ``recency_weight`` / ``recency_half_life_days``: multiply a hit's score by
      ``1 + w * 0.5 ** (age_days / half_life)``, age measured from the question date (or now).
    - ``speaker_weight``: multiply a hit's score by ``1 + w`` when the query names its speaker.
    - ``question_penalty``: multiply the score of a turn that asks a question (ends with "?")
      by ``1 - p``: a question rarely holds the fact being looked for.
    - ``mask_speakers``: the embedding retrievers see the query with the names of the user's
      speakers replaced by "the person" (the lexical one sees it as written); the speaker
      factor still uses the names.
    - ``time_weight`` / ``time_tolerance_days``: when the query says when ("last Saturday",
      "two weeks ago", "in May"), resolved against the question date, multiply the score of a
      hit inside that window by ``1 + w`` (fading to 1 over the tolerance outside it). With
      ``time_fallback``, a window that starts after every candidate memory (no question date,
      old conversations) is resolved against the latest candidate's time instead.
    - ``role_weight`` / ``role_depth``: a question in the first person only ("what did I
      buy?") asks about the user's own turns, one in the second person only ("what did you
      recommend?") about the assistant's; multiply the score of a turn in that role by
      ``1 + w``, over the best ``role_depth`` turns (the factor reads their records).
    - ``session_aggregation`` / ``session_top``: how turn scores add up to a session score.
    """

    name: str = "custom"
    lexical: bool = True
    semantic: bool = True
    sentence: bool = False
    key_kinds: tuple[RecordKind, ...] = (
        RecordKind.TURN, RecordKind.ROUND, RecordKind.WINDOW, RecordKind.FACT,
    )  # fmt: skip
    candidates: int = 100
    key_decay: float = 0.0
    fusion: Fusion = "rrf"
    rrf_k: int = 60
    weights: tuple[tuple[str, float], ...] = (("lexical", 1.0), ("semantic", 1.0))
    recency_weight: float = 0.0
    recency_half_life_days: float = 30.0
    speaker_weight: float = 0.0
    question_penalty: float = 0.0
    mask_speakers: bool = False
    time_weight: float = 0.0
    time_tolerance_days: float = 7.0
    time_fallback: bool = False
    role_weight: float = 0.0
    role_depth: int = 200
    session_aggregation: Aggregation = "max"
    session_top: int = 3
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not (self.lexical or self.semantic or self.sentence):
            raise InvalidInputError("a SearchConfig needs at least one retriever")
        if not self.key_kinds:
            raise InvalidInputError("a SearchConfig needs at least one key kind")
        if not 0.0 <= self.key_decay < 1.0:
            raise InvalidInputError("key_decay must be in [0, 1)")
        if self.candidates < 1 or self.rrf_k < 0 or self.session_top < 1:
            raise InvalidInputError("candidates and session_top must be >= 1, rrf_k >= 0")
        if self.fusion not in ("rrf", "weighted"):
            raise InvalidInputError(f"unknown fusion {self.fusion!r}")
        if self.session_aggregation not in ("max", "sum"):
            raise InvalidInputError(f"unknown session aggregation {self.session_aggregation!r}")
        if self.role_weight < 0 or self.role_depth < 1:
            raise InvalidInputError("role_weight must be >= 0 and role_depth >= 1")
        if self.speaker_weight < 0 or self.time_weight < 0 or self.time_tolerance_days < 0:
            raise InvalidInputError("speaker_weight, time_weight and the tolerance must be >= 0")
        if not 0.0 <= self.question_penalty < 1.0:
            raise InvalidInputError("question_penalty must be in [0, 1)")
        if self.recency_weight < 0 or self.recency_half_life_days <= 0:
            raise InvalidInputError("recency_weight must be >= 0 and the half-life > 0")

    def weight(self, retriever: str) -> float:
        return dict(self.weights).get(retriever, 1.0)

    def with_(self, **changes: Any) -> SearchConfig:
        """A copy with some fields changed (and a name of ``custom`` unless given)."""
        changes.setdefault("name", "custom")
        return replace(self, **changes)


# The presets share their scoring (speaker- and time-aware) and differ in the retrievers.
# Measured choices, see the ablation in docs/benchmarks.md: min-max weighted fusion beats RRF;
# sentence keys and a deeper candidate pool lift the multi-hop questions most; with speaker names
# masked in the embedded query the embedding retrievers pull their weight, and equal weights tie
# the tuned 2 : 1 : 0.5 overall while doing better on the weakest question types.
# Retrieval v2: a question about a period after every memory (no question date) is resolved
# against the latest one (time fallback); in HYBRID, a first- or second-person question favours
# the user's or the assistant's turns (role 0.5; it lowers LongMemEval's session recall with a
# single retriever, so LEXICAL and SEMANTIC go without it).
_SCORING = SearchConfig(
    fusion="weighted", key_decay=0.3, candidates=300, speaker_weight=1.0, question_penalty=0.2,
    mask_speakers=True, time_weight=1.0, time_fallback=True,
)  # fmt: skip
LEXICAL = _SCORING.with_(name="lexical", semantic=False)
SEMANTIC = _SCORING.with_(name="semantic", lexical=False, sentence=True)
HYBRID = _SCORING.with_(
    name="hybrid", sentence=True, role_weight=0.5,
    weights=(("lexical", 1.0), ("semantic", 1.0), ("sentence", 1.0)),
)  # fmt: skip

PRESETS: dict[str, SearchConfig] = {c.name: c for c in (LEXICAL, SEMANTIC, HYBRID)}


def resolve_config(config: SearchConfig | str | None) -> SearchConfig:
    """A config object, a preset name, or None (the ``hybrid`` preset)."""
    if config is None:
        return HYBRID
    if isinstance(config, SearchConfig):
        return config
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]
    raise InvalidInputError(f"unknown search preset {config!r}; known: {sorted(PRESETS)}")
