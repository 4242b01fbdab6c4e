"""The MCP server's tools: what a model sees (names, descriptions, argument and result schemas)
and how each call maps onto :class:`~engram.server.scoped.ScopedMemory`. (How they are handed
to the SDK is :mod:`engram.server.mcp`'s business.)

Every call acts for one user: the server's configured ``mcp_user``, or, where the settings allow
any user, the ``user_id`` the call names (the argument is not in the schemas otherwise). Each
call builds its :class:`ScopedMemory` from the principal of that very request, so nothing of one
caller's scope outlives the call. An :class:`~engram.EngramError` becomes a tool error (the
result's ``isError``) carrying its one-line message; a call never reports success for a write
that did not happen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from engram import Hit, Memory, MemoryRecord, NotFoundError, RecordKind, StoreError
from engram.server.schemas import decode_cursor, encode_cursor
from engram.server.scoped import ScopedMemory
from engram.server.settings import ServerSettings
from engram.server.tenancy import Principal

__all__ = [
    "LLM_TOOLS",
    "MCP_SESSION",
    "TOOLS",
    "Answered",
    "Deleted",
    "Forgotten",
    "FoundMemory",
    "MemoryOut",
    "MemoryPage",
    "MemoryTools",
    "PrincipalSource",
    "Remembered",
    "SearchResults",
    "dedupe",
    "note_id",
]

MCP_SESSION = "mcp"
"""The session of a note remembered without a ``session_id``: one fixed session, so that the
same note remembered on another day (or after a restart) is still recognised and stored once."""

PrincipalSource = Callable[[Context[Any, Any]], Principal]
"""Who the current tool call acts for (the open principal over stdio; the API key's over HTTP)."""

# -- results ----------------------------------------------------------------------------------


class MemoryOut(BaseModel):
    """One stored memory."""

    id: str = Field(description="The record id: pass it to get_memory or delete_memory.")
    session_id: str | None = Field(description="The conversation or notebook it belongs to.")
    timestamp: datetime = Field(description="When it was said or noted (ISO 8601, UTC).")
    role: str | None = Field(description="Who said it: user, assistant, ...")
    name: str | None = Field(None, description="The speaker's name, when known.")
    text: str = Field(description="The memory, verbatim (a fact: a statement drawn from it).")
    metadata: dict[str, Any] = Field(default_factory=dict)
    kind: str = Field("turn", description="turn: something said or noted; fact: extracted.")
    valid_from: datetime | None = Field(None, description="A fact: true since (when known).")
    valid_to: datetime | None = Field(None, description="A fact: true until (null: still).")
    superseded_by: str | None = Field(None, description="A fact: the id of the newer fact.")

    @classmethod
    def of(cls, record: MemoryRecord) -> MemoryOut:
        fact = record.kind is RecordKind.FACT
        return cls(
            id=record.id, session_id=record.session_id, timestamp=record.timestamp,
            role=record.role, name=record.name, text=record.text, metadata=dict(record.metadata),
            kind=record.kind.value, valid_from=record.valid_from if fact else None,
            valid_to=record.valid_to if fact else None, superseded_by=record.superseded_by,
        )  # fmt: skip


class FoundMemory(MemoryOut):
    """A search result."""

    score: float = Field(description="Relevance; higher is better. Only the order matters.")
    duplicate_ids: list[str] = Field(
        default_factory=list,
        description="Other records with the same text, folded into this result.",
    )


class Remembered(BaseModel):
    stored: bool = Field(description="False if this exact note was already remembered.")
    message: str
    memory: MemoryOut


class SearchResults(BaseModel):
    query: str
    results: list[FoundMemory] = Field(description="Best first; no two with the same text.")
    facts: list[FoundMemory] = Field(
        default_factory=list,
        description="Facts extracted from the memories (true now, or at as_of), best first.",
    )


class Answered(BaseModel):
    answer: str = Field(description="The answer, from the user's memories only.")
    citations: list[MemoryOut] = Field(description="The memories the answer rests on.")
    considered: int = Field(description="How many memories were read to answer.")


class MemoryPage(BaseModel):
    memories: list[MemoryOut] = Field(description="In conversation order, session by session.")
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next page; null when this is the last one."
    )


class Deleted(BaseModel):
    id: str
    message: str


class Forgotten(BaseModel):
    forgotten: int = Field(description="How many records were deleted.")
    message: str


# -- pure helpers -----------------------------------------------------------------------------


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def note_id(role: str, content: str) -> str:
    """The message id of a note: the same role and text (up to spacing) give the same id, and
    the same id in the same session is stored once."""
    raw = "\x1f".join((role.strip().lower(), " ".join(content.split())))
    return "mcp:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def dedupe(hits: Sequence[Hit], limit: int) -> list[FoundMemory]:
    """At most ``limit`` results, best first, one per text (compared without case or spacing
    differences): the best hit keeps its place and lists the ids of the others."""
    found: dict[str, FoundMemory] = {}
    for hit in hits:
        key = _fold(hit.record.text)
        if key in found:
            found[key].duplicate_ids.append(hit.record.id)
        elif len(found) < limit:
            out = MemoryOut.of(hit.record).model_dump()
            found[key] = FoundMemory(**out, score=hit.score)
    return list(found.values())


# -- the tools --------------------------------------------------------------------------------

Content = Annotated[
    str,
    Field(description="The memory, in one self-contained sentence or short paragraph."),
]
SessionArg = Annotated[
    str | None,
    Field(description=f"A conversation or topic to file it under (default {MCP_SESSION!r})."),
]
SessionFilter = Annotated[
    str | None, Field(description="Only memories of this session (default: all sessions).")
]
RecordId = Annotated[
    str, Field(description="A memory's id, as search_memory or list_memories gave it.")
]
AsOf = Annotated[
    str | None,
    Field(description="ISO 8601 date: memory as it was then (facts true then); default: now."),
]
UserArg = Annotated[
    str | None,
    Field(description="Whose memory (default: the user this server is configured for)."),
]


class MemoryTools:
    """The tool functions, bound to one memory and the settings. Registered by
    :func:`engram.server.mcp.create_mcp` through :func:`~engram.server.mcp.as_tool`. An empty
    ``session_id`` counts as none (models often send empty strings for optional arguments)."""

    def __init__(
        self, memory: Memory, settings: ServerSettings, principal_source: PrincipalSource
    ) -> None:
        self.memory = memory
        self.settings = settings
        self.principal_source = principal_source

    def _scoped(self, ctx: Context[Any, Any], user_id: str | None) -> tuple[ScopedMemory, str]:
        principal = self.principal_source(ctx)
        user = self.settings.mcp_user if user_id is None else user_id
        return ScopedMemory(self.memory, principal), user

    def remember(
        self,
        content: Content,
        ctx: Context[Any, Any],
        session_id: SessionArg = None,
        role: Annotated[
            str, Field(description="Who said or decided it: 'user' (default) or 'assistant'.")
        ] = "user",
        timestamp: Annotated[
            str | None,
            Field(description="When it happened, ISO 8601 (2024-05-01T09:30:00Z); default: now."),
        ] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Optional JSON object kept with it.")
        ] = None,
        user_id: UserArg = None,
    ) -> Remembered:
        """Save something worth remembering in long-term memory: a fact about the user (name,
        preferences, plans, people, places), a decision, or a note for later conversations.
        Write it as one self-contained statement ("The user's daughter Mia starts school in
        September 2025"), not a fragment. Remembering the same note again in the same session
        stores nothing new and says so (stored: false). Returns the stored memory with its id."""
        scoped, user = self._scoped(ctx, user_id)
        message = {
            "role": role, "content": content, "id": note_id(role, content),
            "timestamp": timestamp, "metadata": metadata,
        }  # fmt: skip
        started = datetime.now(UTC)
        records = scoped.add([message], user_id=user, session_id=session_id or MCP_SESSION)
        if len(records) != 1:
            raise StoreError(f"the memory was not stored ({len(records)} records came back)")
        try:  # read it back: a write that cannot be read is no success
            record = scoped.get(records[0].id, user_id=user)
        except NotFoundError:
            raise StoreError("the memory was not stored: it cannot be read back") from None
        stored = record.created_at >= started
        when = record.created_at.isoformat(timespec="seconds")
        message_text = "Stored." if stored else f"Already remembered (stored {when}); unchanged."
        return Remembered(stored=stored, message=message_text, memory=MemoryOut.of(record))

    def search_memory(
        self,
        query: Annotated[
            str, Field(description="What to look for, in natural language or keywords.")
        ],
        ctx: Context[Any, Any],
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many results.")] = 10,
        session_id: SessionFilter = None,
        as_of: AsOf = None,
        user_id: UserArg = None,
    ) -> SearchResults:
        """Search long-term memory for what is relevant to a question or topic: use it before
        answering anything that may depend on earlier conversations, the user's facts or
        preferences, or notes remembered before. Hybrid search (keywords and meaning), best
        first; each result has its id, session, timestamp, role, text and score, and a text
        that was stored several times comes back once (duplicate_ids lists the other copies).
        An empty list means nothing relevant is stored. facts lists statements extracted from
        the memories (with valid_from / valid_to), when there are any. as_of searches memory
        as it was on that date (what had been said by then, the facts true then)."""
        scoped, user = self._scoped(ctx, user_id)
        wide, session = min(1000, 3 * limit), session_id or None
        hits = scoped.search(query, user_id=user, limit=wide, session_id=session, as_of=as_of)
        facts = scoped.search(query, user_id=user, limit=wide, session_id=session, as_of=as_of,
                              facts=True)  # fmt: skip
        return SearchResults(query=query, results=dedupe(hits, limit), facts=dedupe(facts, limit))

    def list_memories(
        self,
        ctx: Context[Any, Any],
        session_id: SessionFilter = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="Page size.")] = 50,
        cursor: Annotated[
            str | None, Field(description="next_cursor of the previous page; omit for the first.")
        ] = None,
        kind: Annotated[
            Literal["turn", "fact"],
            Field(description="turn (default): what was said or noted; fact: extracted facts."),
        ] = "turn",
        as_of: AsOf = None,
        user_id: UserArg = None,
    ) -> MemoryPage:
        """List stored memories in order (session by session, oldest first), a page at a time:
        use it to review or audit what is remembered, or to browse one session. To find
        something specific, use search_memory instead. Pass next_cursor back as cursor to get
        the next page. kind=fact lists the facts extracted from them, superseded ones too
        (with superseded_by) unless as_of is given: then only what was true on that date."""
        scoped, user = self._scoped(ctx, user_id)
        after = None if cursor is None else decode_cursor(cursor, user)
        page = scoped.list(
            user_id=user, session_id=session_id or None, limit=limit, after=after,
            kinds=(kind,), as_of=as_of or None,
        )  # fmt: skip
        next_cursor = encode_cursor(page[-1]) if len(page) == limit else None
        return MemoryPage(memories=[MemoryOut.of(r) for r in page], next_cursor=next_cursor)

    def get_memory(
        self, record_id: RecordId, ctx: Context[Any, Any], user_id: UserArg = None
    ) -> MemoryOut:
        """Fetch one memory by its id (from search_memory or list_memories), with its session,
        timestamp, role, text and metadata. An unknown id is a NotFoundError."""
        scoped, user = self._scoped(ctx, user_id)
        return MemoryOut.of(scoped.get(record_id, user_id=user))

    def delete_memory(
        self, record_id: RecordId, ctx: Context[Any, Any], user_id: UserArg = None
    ) -> Deleted:
        """Delete one memory for good, by its id: use it when the user asks to forget something
        specific, or when a memory is wrong or outdated (then remember the correct version).
        Search first to find the id; an unknown id is a NotFoundError."""
        scoped, user = self._scoped(ctx, user_id)
        scoped.delete(record_id, user_id=user)
        return Deleted(id=record_id, message=f"Deleted memory {record_id}.")

    def answer_from_memory(
        self,
        question: Annotated[str, Field(description="The question, in natural language.")],
        ctx: Context[Any, Any],
        question_date: Annotated[
            str | None,
            Field(description="When it is asked, ISO 8601; facts true then count (default now)."),
        ] = None,
        user_id: UserArg = None,
    ) -> Answered:
        """Answer a question about the user from long-term memory, with citations: the server's
        model reads the most relevant facts and conversation excerpts (true at question_date)
        and answers from them alone. Use it for direct questions ("Where does the user live
        now?", "What did we decide about the trip?"); use search_memory to browse raw memories.
        An answer without citations means memory does not say; do not guess beyond it."""
        scoped, user = self._scoped(ctx, user_id)
        found = scoped.answer(question, user_id=user, question_date=question_date or None)
        return Answered(
            answer=found.text, citations=[MemoryOut.of(r) for r in found.citations],
            considered=len(found.context),
        )  # fmt: skip

    def forget_all_memories(
        self,
        confirm: Annotated[
            bool, Field(description="Must be true: everything of this user is deleted for good.")
        ],
        ctx: Context[Any, Any],
        user_id: UserArg = None,
    ) -> Forgotten:
        """Delete EVERY memory of the user, permanently, in all sessions. Only when the user has
        explicitly asked to erase all of their memory; never to tidy up. To remove one memory,
        use delete_memory. Requires confirm=true."""
        if confirm is not True:
            raise ToolError("nothing was deleted: set confirm to true to forget all memories")
        scoped, user = self._scoped(ctx, user_id)
        count = scoped.forget(user_id=user)
        return Forgotten(forgotten=count, message=f"Forgot {count} records of user {user!r}.")


def _hints(title: str, *, read_only: bool, destructive: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        title=title, read_only_hint=read_only, destructive_hint=destructive,
        idempotent_hint=True, open_world_hint=False,
    )  # fmt: skip


TOOLS: Mapping[str, ToolAnnotations] = {
    "remember": _hints("Remember", read_only=False),
    "search_memory": _hints("Search memory", read_only=True),
    "list_memories": _hints("List memories", read_only=True),
    "get_memory": _hints("Get a memory", read_only=True),
    "delete_memory": _hints("Delete a memory", read_only=False, destructive=True),
    "forget_all_memories": _hints("Forget all memories", read_only=False, destructive=True),
    "answer_from_memory": _hints("Answer from memory", read_only=True),
}
"""Every tool (a :class:`MemoryTools` method) and its hints; ``forget_all_memories`` is only
registered where the settings allow it, the :data:`LLM_TOOLS` where the memory has an LLM."""

LLM_TOOLS = frozenset({"answer_from_memory"})
