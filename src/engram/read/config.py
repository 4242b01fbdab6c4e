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

    - ``lexical`` / ``semantic``: which retrievers run (BM25 over FTS5; cosine over vectors).
    - ``key_kinds``: which records serve as index keys; a key's hit counts for the turns it
      points to (a round key points to its user and assistant turns).
    - ``candidates``: how many keys each retriever returns before fusion.
    - ``fusion``: ``"rrf"`` (reciprocal rank fusion, constant ``rrf_k``) or ``"weighted"``
      (min-max normalised scores); ``weights`` per retriever name for either.
    - ``recency_weight`` / ``recency_half_life_days``: multiply a hit's score by
      ``1 + w * 0.5 ** (age_days / half_life)``, age measured from the question date (or now).
    - ``speaker_weight``: multiply a hit's score by ``1 + w`` when the query names its speaker.
    - ``session_aggregation`` / ``session_top``: how turn scores add up to a session score.
    """

    name: str = "custom"
    lexical: bool = True
    semantic: bool = True
    key_kinds: tuple[RecordKind, ...] = (RecordKind.TURN, RecordKind.ROUND, RecordKind.WINDOW)
    candidates: int = 100
    fusion: Fusion = "rrf"
    rrf_k: int = 60
    weights: tuple[tuple[str, float], ...] = (("lexical", 1.0), ("semantic", 1.0))
    recency_weight: float = 0.0
    recency_half_life_days: float = 30.0
    speaker_weight: float = 0.0
    session_aggregation: Aggregation = "max"
    session_top: int = 3
    extra: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not (self.lexical or self.semantic):
            raise InvalidInputError("a SearchConfig needs at least one retriever")
        if not self.key_kinds:
            raise InvalidInputError("a SearchConfig needs at least one key kind")
        if self.candidates < 1 or self.rrf_k < 0 or self.session_top < 1:
            raise InvalidInputError("candidates and session_top must be >= 1, rrf_k >= 0")
        if self.fusion not in ("rrf", "weighted"):
            raise InvalidInputError(f"unknown fusion {self.fusion!r}")
        if self.session_aggregation not in ("max", "sum"):
            raise InvalidInputError(f"unknown session aggregation {self.session_aggregation!r}")
        if self.speaker_weight < 0:
            raise InvalidInputError("speaker_weight must be >= 0")
        if self.recency_weight < 0 or self.recency_half_life_days <= 0:
            raise InvalidInputError("recency_weight must be >= 0 and the half-life > 0")

    def weight(self, retriever: str) -> float:
        return dict(self.weights).get(retriever, 1.0)

    def with_(self, **changes: Any) -> SearchConfig:
        """A copy with some fields changed (and a name of ``custom`` unless given)."""
        changes.setdefault("name", "custom")
        return replace(self, **changes)


LEXICAL = SearchConfig(name="lexical", semantic=False)
SEMANTIC = SearchConfig(name="semantic", lexical=False)
HYBRID = SearchConfig(name="hybrid")

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
