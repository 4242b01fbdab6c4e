"""Core domain types: frozen dataclasses with timezone-aware datetimes.

Two clocks (after Graphiti): ``timestamp`` / ``valid_from`` / ``valid_to`` say when something
happened or was true in the world; ``created_at`` says when Engram recorded it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from engram.errors import ScopeError

__all__ = [
    "DERIVED_KEY_KINDS",
    "VECTOR_ONLY_KINDS",
    "HistoryEvent",
    "Hit",
    "KeyRef",
    "MemoryRecord",
    "RecordFilter",
    "RecordKind",
    "RetrieverScore",
    "Scope",
    "SessionHit",
    "StoreStats",
]


class RecordKind(StrEnum):
    """What a record is. Turns are the verbatim values. Rounds (a user turn and the assistant turn
    answering it), windows (a few consecutive turns) and sentences (one sentence of a longer turn)
    are extra index keys; facts and summaries are derived memories. All of them point back to
    their source turns."""

    TURN = "turn"
    ROUND = "round"
    WINDOW = "window"
    SENTENCE = "sentence"
    FACT = "fact"
    SUMMARY = "summary"


def _check_id(name: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise ScopeError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > 256:
        raise ScopeError(f"{name} is longer than 256 characters")


DERIVED_KEY_KINDS = (RecordKind.ROUND, RecordKind.WINDOW, RecordKind.SENTENCE)
"""Index keys built from turns alone: rebuilt when a turn changes, deleted with it."""

VECTOR_ONLY_KINDS = (RecordKind.SENTENCE,)
"""Keys that only the vector index holds: their words are in their turn's full-text row already,
and a second copy would skew the BM25 statistics."""


@dataclass(frozen=True)
class Scope:
    """Whose memory: ``user_id`` is required for every read and write."""

    user_id: str
    agent_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        _check_id("user_id", self.user_id, required=True)
        _check_id("agent_id", self.agent_id, required=False)
        _check_id("session_id", self.session_id, required=False)


@dataclass(frozen=True)
class MemoryRecord:
    """One stored memory. ``provenance`` holds the ids of the records it was derived from;
    ``message_ids`` holds the caller's own ids of the source messages (for a turn: its own)."""

    id: str
    kind: RecordKind
    text: str
    user_id: str
    session_id: str | None
    agent_id: str | None
    role: str | None
    name: str | None
    seq: int | None
    timestamp: datetime
    created_at: datetime
    provenance: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def message_id(self) -> str | None:
        """The caller's id of the message this record stores (turns only)."""
        if self.kind is RecordKind.TURN and self.message_ids:
            return self.message_ids[0]
        return None

    @property
    def key_text(self) -> str:
        """The text that is indexed: the speaker's name, when known, is part of what was said."""
        return f"{self.name}: {self.text}" if self.name else self.text


@dataclass(frozen=True)
class KeyRef:
    """The part of a record that ranking reads: which turns a key points to, and what the
    scoring factors look at. Cheaper to load than the whole :class:`MemoryRecord` when a query
    weighs hundreds of candidate keys and returns ten."""

    id: str
    kind: RecordKind
    provenance: tuple[str, ...]
    name: str | None
    timestamp: datetime
    text: str


@dataclass(frozen=True)
class RecordFilter:
    """Which records a store operation may see. The store enforces ``user_id`` itself."""

    user_id: str
    agent_id: str | None = None
    session_id: str | None = None
    kinds: tuple[RecordKind, ...] = ()

    def __post_init__(self) -> None:
        Scope(self.user_id, self.agent_id, self.session_id)


@dataclass(frozen=True)
class RetrieverScore:
    """What one retriever said about a hit: its 1-based rank and raw score."""

    rank: int
    score: float


@dataclass(frozen=True)
class Hit:
    """A search result: the record, its final score, and per-retriever explanations."""

    record: MemoryRecord
    score: float
    sources: Mapping[str, RetrieverScore] = field(default_factory=dict)
    matched_keys: tuple[str, ...] = ()

    @property
    def message_id(self) -> str | None:
        return self.record.message_id

    @property
    def found_by(self) -> tuple[str, ...]:
        return tuple(self.sources)


@dataclass(frozen=True)
class SessionHit:
    """Hits aggregated to their session."""

    session_id: str
    score: float
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class HistoryEvent:
    """One entry of a record's audit trail."""

    id: int
    record_id: str
    user_id: str
    event: str  # ADD | UPDATE | DELETE
    old_text: str | None
    new_text: str | None
    at: datetime


@dataclass(frozen=True)
class StoreStats:
    """Counts for one user, or for the whole store."""

    records: Mapping[str, int]
    users: int
    sessions: int
    size_bytes: int | None
    embedder: str | None
    dim: int | None
