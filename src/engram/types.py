"""Core domain types: frozen dataclasses with timezone-aware datetimes.

Two clocks (after Graphiti): ``timestamp`` / ``valid_from`` / ``valid_to`` say when something
happened or was true in the world; ``created_at`` says when Engram recorded it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from engram.errors import ScopeError

__all__ = [
    "DERIVED_KEY_KINDS",
    "MAX_ID_CHARS",
    "VECTOR_ONLY_KINDS",
    "Answer",
    "HistoryEvent",
    "Hit",
    "JobReport",
    "KeyRef",
    "MemoryRecord",
    "ProcessReport",
    "RecordFilter",
    "RecordKind",
    "RetrieverScore",
    "Scope",
    "SessionHit",
    "StoreStats",
    "Usage",
    "id_problem",
    "short_repr",
    "valid_at",
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


MAX_ID_CHARS = 256
"""The longest ``user_id``, ``session_id``, ``agent_id`` or record id."""

# C0 controls (the unit separator \x1f among them), DEL, C1 controls and lone surrogates (the
# latter are what a non-UTF-8 byte becomes under ``surrogateescape``, and cannot be encoded).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid id (a non-empty string of at most :data:`MAX_ID_CHARS`
    characters with no control character or lone surrogate), or ``None`` if it is one."""
    if not isinstance(value, str):
        return f"must be a string, got {short_repr(value)}"
    if not value.strip():
        return f"must be a non-empty string, got {short_repr(value)}"
    if len(value) > MAX_ID_CHARS:
        return f"is longer than {MAX_ID_CHARS} characters"
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    char = bad.group()
    kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return f"contains {kind} ({char!r} at position {bad.start()}): {short_repr(value)}"


def short_repr(value: object) -> str:
    """``repr(value)`` cut to about 80 characters, for error messages. Containers and other
    objects are named by their type only: their ``repr`` may be huge, or recurse too deep."""
    if isinstance(value, str | bytes | bytearray):
        return repr(value[:77]) + ("..." if len(value) > 77 else "")
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"
    if value is None or isinstance(value, int | float):
        return repr(value)
    return f"<{type(value).__name__}>"


def _check_id(name: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    problem = id_problem(value)
    if problem is not None:
        raise ScopeError(f"{name} {problem}")


DERIVED_KEY_KINDS = (RecordKind.ROUND, RecordKind.WINDOW, RecordKind.SENTENCE)
"""Index keys built from turns alone: rebuilt when a turn changes, deleted with it."""

VECTOR_ONLY_KINDS = (RecordKind.SENTENCE,)
"""Keys that only the vector index holds: their words are in their turn's full-text row already,
and a second copy would skew the BM25 statistics."""


@dataclass(frozen=True)
class Scope:
    """Whose memory: ``user_id`` is required for every read and write. Each id is a non-empty
    string of at most :data:`MAX_ID_CHARS` characters without control characters (C0, DEL, C1)
    or lone surrogates; anything else is a :class:`~engram.ScopeError`. Record ids are derived
    from these ids joined by ``\\x1f``, which therefore none of them can contain."""

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
    ``message_ids`` holds the caller's own ids of the source messages (for a turn: its own).

    Facts carry both clocks: ``valid_from`` / ``valid_to`` say when the fact was true in the
    world (``valid_to`` None: still true), ``created_at`` / ``expired_at`` when Engram learned
    and retired it; a superseded fact names its successor in ``superseded_by``. Nothing is
    deleted when a fact stops being true."""

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
    expired_at: datetime | None = None
    superseded_by: str | None = None

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


def valid_at(record: MemoryRecord | KeyRef, when: datetime | None) -> bool:
    """Whether a record was part of memory at ``when`` (None: now). A fact must have been true
    then (``valid_from`` <= when < ``valid_to``; an unknown start counts from when it was
    said); with ``when`` None, a fact must not be retired. Any other record must have been
    said by then."""
    if record.kind is not RecordKind.FACT:
        return when is None or record.timestamp <= when
    if when is None:
        return record.valid_to is None and record.expired_at is None
    start = record.valid_from or record.timestamp
    return start <= when and (record.valid_to is None or when < record.valid_to)


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
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    expired_at: datetime | None = None


@dataclass(frozen=True)
class RecordFilter:
    """Which records a store operation may see. The store enforces ``user_id`` itself.
    ``as_of``: only what was part of memory then (:func:`valid_at`); used by ``list``."""

    user_id: str
    agent_id: str | None = None
    session_id: str | None = None
    kinds: tuple[RecordKind, ...] = ()
    as_of: datetime | None = None

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
    event: str  # ADD | UPDATE | DELETE; facts also MERGE | NOOP | SUPERSEDE | RETIRE
    old_text: str | None
    new_text: str | None
    at: datetime
    reason: str | None = None  # why consolidation decided so (the model's or the rule's)


@dataclass(frozen=True)
class StoreStats:
    """Counts for one user, or for the whole store."""

    records: Mapping[str, int]
    users: int
    sessions: int
    size_bytes: int | None
    embedder: str | None
    dim: int | None
    pending_jobs: int = 0  # deferred extractions not done yet (failed ones included)
    failed_jobs: int = 0  # of those, the ones whose last attempt failed
    llm: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # purpose -> Usage


@dataclass(frozen=True)
class Usage:
    """What some LLM calls cost: ``calls`` requests that got an answer (retries count),
    ``failed`` requests that did not, and the tokens the endpoint reported."""

    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.failed + other.failed,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "failed": self.failed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclass(frozen=True)
class Answer:
    """An answer from memory: its text, the records it cites (in context order), every
    record the model was shown, and what the call cost."""

    text: str
    citations: tuple[MemoryRecord, ...]
    context: tuple[MemoryRecord, ...]
    usage: Usage


@dataclass(frozen=True)
class JobReport:
    """What one job did: counts of each action, and the usage of its LLM calls."""

    job_id: int
    actions: dict[str, int]
    rejected: int
    usage: Usage
    error: str | None = None


@dataclass(frozen=True)
class ProcessReport:
    """What a :meth:`~engram.Memory.process_pending` call did."""

    jobs: tuple[JobReport, ...] = ()

    @property
    def done(self) -> int:
        return sum(1 for j in self.jobs if j.error is None)

    @property
    def failed(self) -> int:
        return sum(1 for j in self.jobs if j.error is not None)

    @property
    def usage(self) -> Usage:
        total = Usage()
        for job in self.jobs:
            total = total + job.usage
        return total

    def count(self, verb: str) -> int:
        return sum(j.actions.get(verb, 0) for j in self.jobs)
