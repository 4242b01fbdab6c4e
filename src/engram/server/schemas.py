"""The wire format of the REST API (pydantic models) and its conversion to and from Engram's
types. :class:`engram.Client` reads responses with the same models, so both sides agree."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engram import (
    HistoryEvent,
    Hit,
    InvalidInputError,
    MemoryRecord,
    RecordKind,
    RetrieverScore,
    SearchConfig,
    SessionHit,
    StoreStats,
)
from engram.types import id_problem

__all__ = [
    "AddRequest",
    "ErrorBody",
    "ForgetRequest",
    "HitOut",
    "RecordOut",
    "SearchRequest",
    "SessionHitOut",
    "SessionListResponse",
    "SessionSummaryOut",
    "UpdateRequest",
    "UserPage",
    "decode_cursor",
    "encode_cursor",
]

MAX_CANDIDATES = 2000  # a SearchConfig sent over the wire may not ask for more per retriever
MAX_WEIGHT = 1e6  # nor weights whose product overflows a float (an infinite score is no JSON)
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]
Boost = Annotated[float, Field(ge=0, le=MAX_WEIGHT)]


# Dates in requests stay strings here: Memory parses them itself, so a request is validated
# exactly as Memory.add / Memory.search validate their arguments (and a timestamp keeps the
# offset it was written with, which is part of the id of a message that has none).
DateTime = Annotated[
    str,
    Field(
        max_length=64, json_schema_extra={"format": "date-time"}, examples=["2024-05-08T13:56:00Z"]
    ),
]


class _In(BaseModel):
    # no NaN or infinities (Python's json reads them): a score made from one cannot be sent
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MessageIn(_In):
    """One message, as ``Memory.add`` takes it (it validates the values)."""

    role: str
    content: str
    id: str | None = None
    name: str | None = None
    timestamp: DateTime | None = None
    metadata: dict[str, Any] | None = None


class AddRequest(_In):
    user_id: str
    session_id: str | None = None
    session_date: DateTime | None = None
    agent_id: str | None = None
    messages: list[MessageIn] = Field(min_length=1)
    extract: Literal["sync", "background", "off"] | None = Field(
        None, description="Fact extraction for these turns (default: the server's)."
    )


class UpdateRequest(_In):
    user_id: str
    text: str


class ForgetRequest(_In):
    user_id: str
    session_id: str | None = None


_DEFAULT = SearchConfig()  # the wire's defaults are the dataclass's own, never a copy


class SearchConfigIn(_In):
    """A :class:`~engram.SearchConfig` by its fields (see docs/python-api.md)."""

    name: str = _DEFAULT.name
    lexical: bool = _DEFAULT.lexical
    semantic: bool = _DEFAULT.semantic
    sentence: bool = _DEFAULT.sentence
    key_kinds: list[RecordKind] = list(_DEFAULT.key_kinds)
    candidates: int = Field(_DEFAULT.candidates, ge=1, le=MAX_CANDIDATES)
    key_decay: float = _DEFAULT.key_decay
    fusion: Literal["rrf", "weighted"] = _DEFAULT.fusion
    rrf_k: int = Field(_DEFAULT.rrf_k, ge=0, le=10_000)
    weights: dict[str, Weight] = dict(_DEFAULT.weights)
    recency_weight: Boost = _DEFAULT.recency_weight
    recency_half_life_days: float = _DEFAULT.recency_half_life_days
    speaker_weight: Boost = _DEFAULT.speaker_weight
    question_penalty: float = _DEFAULT.question_penalty
    mask_speakers: bool = _DEFAULT.mask_speakers
    time_weight: Boost = _DEFAULT.time_weight
    time_tolerance_days: float = _DEFAULT.time_tolerance_days
    time_fallback: bool = _DEFAULT.time_fallback
    role_weight: Boost = _DEFAULT.role_weight
    role_depth: int = Field(_DEFAULT.role_depth, ge=1, le=10_000)
    session_aggregation: Literal["max", "sum"] = _DEFAULT.session_aggregation
    session_top: int = Field(_DEFAULT.session_top, ge=1, le=1000)

    def to_config(self) -> SearchConfig:
        values = self.model_dump()
        values["key_kinds"] = tuple(self.key_kinds)
        values["weights"] = tuple(self.weights.items())
        return SearchConfig(**values)  # its own checks raise InvalidInputError

    @classmethod
    def of(cls, config: SearchConfig) -> SearchConfigIn:
        values = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "extra"}
        if config.extra:
            raise InvalidInputError("a SearchConfig with 'extra' cannot be sent to a server")
        values["weights"] = dict(config.weights)
        values["key_kinds"] = list(config.key_kinds)
        return cls(**values)


class SearchRequest(_In):
    query: str
    user_id: str
    limit: int = 10
    session_id: str | None = None
    agent_id: str | None = None
    question_date: DateTime | None = None
    config: Literal["hybrid", "lexical", "semantic"] | SearchConfigIn | None = None
    as_of: DateTime | None = None

    def search_config(self) -> SearchConfig | str | None:
        return self.config.to_config() if isinstance(self.config, SearchConfigIn) else self.config


class RecordOut(BaseModel):
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
    provenance: list[str]
    message_ids: list[str]
    valid_from: datetime | None
    valid_to: datetime | None
    metadata: dict[str, Any]
    expired_at: datetime | None = Field(None, description="When a fact was retired (facts).")
    superseded_by: str | None = Field(None, description="The fact that replaced this one.")

    @classmethod
    def of(cls, record: MemoryRecord) -> RecordOut:
        values = {f.name: getattr(record, f.name) for f in fields(record)}
        values.update(
            provenance=list(record.provenance), message_ids=list(record.message_ids),
            metadata=dict(record.metadata),
        )  # fmt: skip
        return cls(**values)

    def to_record(self) -> MemoryRecord:
        values = self.model_dump()
        values.update(provenance=tuple(self.provenance), message_ids=tuple(self.message_ids))
        return MemoryRecord(**values)


class RetrieverScoreOut(BaseModel):
    rank: int
    score: float


class HitOut(BaseModel):
    record: RecordOut
    score: float
    found_by: dict[str, RetrieverScoreOut]
    matched_keys: list[str]

    @classmethod
    def of(cls, hit: Hit) -> HitOut:
        found = {k: RetrieverScoreOut(rank=v.rank, score=v.score) for k, v in hit.sources.items()}
        return cls(
            record=RecordOut.of(hit.record), score=hit.score, found_by=found,
            matched_keys=list(hit.matched_keys),
        )  # fmt: skip

    def to_hit(self) -> Hit:
        sources = {k: RetrieverScore(v.rank, v.score) for k, v in self.found_by.items()}
        return Hit(self.record.to_record(), self.score, sources, tuple(self.matched_keys))


class SessionHitOut(BaseModel):
    session_id: str
    score: float
    hits: list[HitOut]

    @classmethod
    def of(cls, session: SessionHit) -> SessionHitOut:
        return cls(
            session_id=session.session_id, score=session.score,
            hits=[HitOut.of(h) for h in session.hits],
        )  # fmt: skip

    def to_session(self) -> SessionHit:
        return SessionHit(self.session_id, self.score, tuple(h.to_hit() for h in self.hits))


class HistoryEventOut(BaseModel):
    id: int
    record_id: str
    user_id: str
    event: str
    old_text: str | None
    new_text: str | None
    at: datetime
    reason: str | None = None

    @classmethod
    def of(cls, event: HistoryEvent) -> HistoryEventOut:
        return cls(**{f.name: getattr(event, f.name) for f in fields(event)})

    def to_event(self) -> HistoryEvent:
        return HistoryEvent(**self.model_dump())


class StatsOut(BaseModel):
    records: dict[str, int]
    users: int
    sessions: int
    size_bytes: int | None
    embedder: str | None
    dim: int | None
    pending_jobs: int = Field(0, description="Deferred extractions not done yet.")
    failed_jobs: int = Field(0, description="Of those, the ones whose last attempt failed.")
    llm: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="LLM usage by purpose (extract, answer, ...)."
    )

    @classmethod
    def of(cls, stats: StoreStats) -> StatsOut:
        values = {f.name: getattr(stats, f.name) for f in fields(stats)}
        values["records"] = dict(stats.records)
        values["llm"] = {purpose: dict(usage) for purpose, usage in stats.llm.items()}
        return cls(**values)

    def to_stats(self) -> StoreStats:
        return StoreStats(**self.model_dump())


class AddResponse(BaseModel):
    records: list[RecordOut]


class RecordPage(BaseModel):
    records: list[RecordOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class UserPage(BaseModel):
    users: list[str] = Field(description="User ids, in code point order.")
    next: str | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


class SearchResponse(BaseModel):
    hits: list[HitOut]


class SessionSearchResponse(BaseModel):
    sessions: list[SessionHitOut]


class SessionSummaryOut(BaseModel):
    session_id: str | None
    turns: int = Field(description="How many turns the session holds.")
    first_at: datetime = Field(description="The timestamp of its first turn.")
    last_at: datetime = Field(description="The timestamp of its last turn.")
    agent_ids: list[str] = Field(description="The agents of its turns, sorted.")


class SessionListResponse(BaseModel):
    sessions: list[SessionSummaryOut] = Field(description="In the order of their session ids.")


class DeleteResponse(BaseModel):
    deleted: list[str]


class ForgetResponse(BaseModel):
    forgotten: int


class HistoryResponse(BaseModel):
    events: list[HistoryEventOut]


class ErrorDetail(BaseModel):
    type: str = Field(description="The EngramError subclass, e.g. NotFoundError.")
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- list cursors -------------------------------------------------------------------------------


def encode_cursor(record: MemoryRecord) -> str:
    """An opaque cursor: the list position of ``record`` (its session, seq, kind and id)."""
    raw = json.dumps([record.session_id, record.seq, record.kind.value, record.id])
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ANCHOR: Mapping[str, Any] = {
    "text": "", "agent_id": None, "role": None, "name": None, "timestamp": _EPOCH,
    "created_at": _EPOCH,
}  # fmt: skip
MAX_SEQ = 2**62


def decode_cursor(cursor: str, user_id: str) -> MemoryRecord:
    """The anchor record of a cursor (only its position fields are meaningful)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        session_id, seq, kind, rid = json.loads(raw)
        # ids as the store holds them: a lone surrogate cannot even be sent to SQLite
        if not (session_id is None or id_problem(session_id) is None) or id_problem(rid):
            raise ValueError
        if not (seq is None or (type(seq) is int and 0 <= seq < MAX_SEQ)):
            raise ValueError
        position = {"session_id": session_id, "seq": seq, "kind": RecordKind(kind), "id": rid}
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError("cursor is not one this server returned") from None
    return MemoryRecord(**{**_ANCHOR, **position, "user_id": user_id})
