"""The ``/v1`` routes: each one a thin call of :class:`~engram.server.scoped.ScopedMemory`.

Route functions are plain ``def``: FastAPI runs them on its thread pool, so the model and the
database never block the event loop, and reads run side by side (the store's read connections).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from engram import InvalidInputError, MemoryRecord, RecordKind
from engram.server.auth import scoped_memory
from engram.server.schemas import (
    AddRequest,
    AddResponse,
    DeleteResponse,
    ErrorBody,
    ForgetRequest,
    ForgetResponse,
    HistoryEventOut,
    HistoryResponse,
    HitOut,
    RecordOut,
    RecordPage,
    SearchRequest,
    SearchResponse,
    SessionHitOut,
    SessionListResponse,
    SessionSearchResponse,
    SessionSummaryOut,
    StatsOut,
    UpdateRequest,
    UserPage,
    decode_cursor,
    encode_cursor,
)
from engram.server.scoped import ScopedMemory

__all__ = ["ERRORS", "Mem", "router"]

ERRORS = {
    status: {"model": ErrorBody}
    for status in (400, 401, 403, 404, 409, 413, 415, 422, 500, 501, 502, 503, 504)
}
router = APIRouter(prefix="/v1", responses=ERRORS)  # type: ignore[arg-type]
Mem = Annotated[ScopedMemory, Depends(scoped_memory)]
UserQuery = Annotated[str, Query(description="The user whose memory this is.")]


@router.post("/messages", status_code=201, response_model=AddResponse, tags=["write"])
def add_messages(body: AddRequest, mem: Mem, request: Request) -> AddResponse:
    """Store the messages of one session verbatim (one transaction) and index them. Idempotent:
    a message already stored (same id, or same role, content and timestamp) is not stored
    again. Returns the turn record of every message, in order. ``extract``: queue the turns
    for fact extraction (``background``), extract before answering (``sync``), or not
    (``off``); the default is the server's (``extract_default``)."""
    limit = request.app.state.settings.max_messages
    if len(body.messages) > limit:
        raise InvalidInputError(f"at most {limit} messages per request, got {len(body.messages)}")
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    records = mem.add(
        messages, user_id=body.user_id, session_id=body.session_id,
        session_date=body.session_date, agent_id=body.agent_id, extract=body.extract,
    )  # fmt: skip
    return AddResponse(records=[RecordOut.of(r) for r in records])


@router.post("/search", response_model=SearchResponse, tags=["read"])
def search(body: SearchRequest, mem: Mem) -> SearchResponse:
    """The turns most relevant to the query, best first; ``found_by`` says which retriever
    found each hit, at what rank and raw score. ``as_of``: memory as it was then."""
    hits = mem.search(
        body.query, user_id=body.user_id, limit=body.limit, session_id=body.session_id,
        agent_id=body.agent_id, question_date=body.question_date, config=body.search_config(),
        as_of=body.as_of,
    )  # fmt: skip
    return SearchResponse(hits=[HitOut.of(h) for h in hits])


@router.post("/search/sessions", response_model=SessionSearchResponse, tags=["read"])
def search_sessions(body: SearchRequest, mem: Mem) -> SessionSearchResponse:
    """Sessions ranked by their best turns (``session_id`` must not be given)."""
    if body.session_id is not None:
        raise InvalidInputError("search/sessions ranks sessions: session_id cannot be given")
    if body.as_of is not None:
        raise InvalidInputError("search/sessions does not take as_of")
    sessions = mem.search_sessions(
        body.query, user_id=body.user_id, limit=body.limit, agent_id=body.agent_id,
        question_date=body.question_date, config=body.search_config(),
    )  # fmt: skip
    return SessionSearchResponse(sessions=[SessionHitOut.of(s) for s in sessions])


@router.get("/records", response_model=RecordPage, tags=["read"])
def list_records(
    mem: Mem,
    user_id: UserQuery,
    session_id: str | None = None,
    agent_id: str | None = None,
    kind: Annotated[list[RecordKind] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    as_of: Annotated[str | None, Query(max_length=64)] = None,
) -> RecordPage:
    """Records in conversation order (turns unless ``kind`` says otherwise), a page at a time:
    pass ``next_cursor`` back as ``cursor``. Pages neither skip nor repeat records when others
    are added or deleted meanwhile. ``as_of``: only what was part of memory then (facts true
    then, other records said by then)."""
    after = None if cursor is None else decode_cursor(cursor, user_id)
    records = mem.list(
        user_id=user_id, session_id=session_id, agent_id=agent_id,
        kinds=kind or (RecordKind.TURN,), limit=limit, after=after, as_of=as_of,
    )  # fmt: skip
    next_cursor = encode_cursor(records[-1]) if len(records) == limit else None
    return RecordPage(records=[RecordOut.of(r) for r in records], next_cursor=next_cursor)


@router.get("/records/{record_id}", response_model=RecordOut, tags=["read"])
def get_record(record_id: str, mem: Mem, user_id: UserQuery) -> RecordOut:
    return RecordOut.of(mem.get(record_id, user_id=user_id))


@router.patch("/records/{record_id}", response_model=RecordOut, tags=["write"])
def update_record(record_id: str, body: UpdateRequest, mem: Mem) -> RecordOut:
    """Replace a record's text; the keys built from it are rebuilt in the same transaction and
    the old text stays in its history."""
    return RecordOut.of(mem.update(record_id, body.text, user_id=body.user_id))


@router.delete("/records/{record_id}", response_model=DeleteResponse, tags=["write"])
def delete_record(record_id: str, mem: Mem, user_id: UserQuery) -> DeleteResponse:
    """Hard-delete a record and the keys built from it; no text of it is left anywhere."""
    return DeleteResponse(deleted=mem.delete(record_id, user_id=user_id))


@router.get("/records/{record_id}/history", response_model=HistoryResponse, tags=["read"])
def record_history(record_id: str, mem: Mem, user_id: UserQuery) -> HistoryResponse:
    events = mem.history(record_id, user_id=user_id)
    return HistoryResponse(events=[HistoryEventOut.of(e) for e in events])


@router.post("/forget", response_model=ForgetResponse, tags=["write"])
def forget(body: ForgetRequest, mem: Mem) -> ForgetResponse:
    """Hard-delete everything of a user, or of one of their sessions: records, index rows and
    history. Returns how many records were deleted."""
    return ForgetResponse(forgotten=mem.forget(user_id=body.user_id, session_id=body.session_id))


@router.get("/stats", response_model=StatsOut, tags=["read"])
def stats(mem: Mem, user_id: str | None = None) -> StatsOut:
    """Counts for a user (with an API key a user_id is required), or for the whole store."""
    return StatsOut.of(mem.stats(user_id=user_id))


@router.get("/users", response_model=UserPage, tags=["read"])
def list_users(
    mem: Mem,
    prefix: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=256)] = None,
) -> UserPage:
    """The users that have records, in code point order, a page at a time: pass ``next`` back
    as ``after``. With an API key: the users of its tenant that its users pattern allows;
    without keys: every user of the store."""
    users, more = mem.users_page(prefix=prefix, limit=limit, after=after)
    return UserPage(users=users, next=users[-1] if more else None)


SESSION_PAGE = 1000  # turns read per Memory.list call while summing up sessions


@router.get("/sessions", response_model=SessionListResponse, tags=["read"])
def list_sessions(mem: Mem, user_id: UserQuery, agent_id: str | None = None) -> SessionListResponse:
    """A user's sessions, with how many turns each holds and the times of its first and last
    turn. Reads every turn of the user (Memory.list, a page at a time): its cost grows with the
    user's turns."""
    sessions: list[SessionSummaryOut] = []
    agents: set[str] = set()
    after: MemoryRecord | None = None
    while True:
        page = mem.list(
            user_id=user_id, agent_id=agent_id, kinds=(RecordKind.TURN,), limit=SESSION_PAGE,
            after=after,
        )  # fmt: skip
        for turn in page:
            _count_turn(sessions, agents, turn)
        if len(page) < SESSION_PAGE:
            return SessionListResponse(sessions=sessions)
        after = page[-1]


def _count_turn(sessions: list[SessionSummaryOut], agents: set[str], turn: MemoryRecord) -> None:
    """Add one turn (in list order: by session, then seq) to the summaries."""
    last = sessions[-1] if sessions else None
    if last is None or last.session_id != turn.session_id:
        agents.clear()
        last = SessionSummaryOut(
            session_id=turn.session_id, turns=0, first_at=turn.timestamp,
            last_at=turn.timestamp, agent_ids=[],
        )  # fmt: skip
        sessions.append(last)
    last.turns += 1
    last.first_at = min(last.first_at, turn.timestamp)
    last.last_at = max(last.last_at, turn.timestamp)
    if turn.agent_id is not None and turn.agent_id not in agents:
        agents.add(turn.agent_id)
        last.agent_ids = sorted(agents)
