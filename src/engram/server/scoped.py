"""One principal's view of a :class:`~engram.Memory`: the calls of the REST and MCP servers go
through here, so both map user ids (and check what a key may do) in exactly one place."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from engram import (
    ConfigurationError,
    HistoryEvent,
    Hit,
    Memory,
    MemoryRecord,
    PermissionDeniedError,
    RecordKind,
    SearchConfig,
    SessionHit,
    StoreStats,
)
from engram.checks import MAX_LIMIT, check_limit, check_user_page
from engram.errors import ScopeError
from engram.server.errors import NeedsLLMError
from engram.server.tenancy import Principal
from engram.types import Answer, ProcessReport

if TYPE_CHECKING:
    from engram.memory import Extract

__all__ = ["ScopedMemory"]


class ScopedMemory:
    """The :class:`~engram.Memory` methods, for the users a :class:`Principal` may act for.
    User ids go in as the caller's and come back as the caller's; what is stored carries the
    tenant's prefix (:mod:`engram.server.tenancy`)."""

    def __init__(self, memory: Memory, principal: Principal) -> None:
        self.memory = memory
        self.principal = principal

    def _user(self, user_id: str, *, write: bool = False) -> str:
        return self.principal.stored_user(user_id, write=write)

    def _record(self, record: MemoryRecord) -> MemoryRecord:
        return replace(record, user_id=self.principal.public_user(record.user_id))

    def _hit(self, hit: Hit) -> Hit:
        return replace(hit, record=self._record(hit.record))

    @contextmanager
    def _llm(self) -> Iterator[None]:
        """A ConfigurationError of a memory without an LLM is the client's :class:`NeedsLLMError`
        (501), not the server's misconfiguration (500)."""
        try:
            yield
        except ConfigurationError as exc:
            if self.memory.llm is None and not isinstance(exc, NeedsLLMError):
                raise NeedsLLMError(str(exc)) from None
            raise

    # -- writes ---------------------------------------------------------------------------------

    def add(
        self,
        messages: Sequence[object],
        *,
        user_id: str,
        session_id: str | None = None,
        session_date: datetime | str | None = None,
        agent_id: str | None = None,
        extract: Extract | None = None,
    ) -> builtins.list[MemoryRecord]:
        stored = self._user(user_id, write=True)
        with self._llm():
            records = self.memory.add(
                messages, user_id=stored, session_id=session_id, session_date=session_date,
                agent_id=agent_id, extract=extract,
            )  # fmt: skip
        return [self._record(r) for r in records]

    def process_pending(self, *, limit: int = 100, user_id: str | None = None) -> ProcessReport:
        """Jobs of one user; every user's only in the open mode (a tenant's key names a user,
        so that it never claims, nor learns of, another tenant's jobs). A write: read-only
        keys may not."""
        if user_id is None:
            if not self.principal.open:
                raise PermissionDeniedError(
                    "processing every user's jobs is for the open (keyless) mode; name a user_id"
                )
            stored = None
        else:
            stored = self._user(user_id, write=True)
        with self._llm():
            return self.memory.process_pending(limit=limit, user_id=stored)

    def update(self, record_id: str, text: str, *, user_id: str) -> MemoryRecord:
        stored = self._user(user_id, write=True)
        return self._record(self.memory.update(record_id, text, user_id=stored))

    def delete(self, record_id: str, *, user_id: str) -> builtins.list[str]:
        return self.memory.delete(record_id, user_id=self._user(user_id, write=True))

    def forget(self, *, user_id: str, session_id: str | None = None) -> int:
        return self.memory.forget(user_id=self._user(user_id, write=True), session_id=session_id)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, record_id: str, *, user_id: str) -> MemoryRecord:
        return self._record(self.memory.get(record_id, user_id=self._user(user_id)))

    def list(
        self,
        *,
        user_id: str,
        session_id: str | None = None,
        agent_id: str | None = None,
        kinds: Sequence[str | RecordKind] = (RecordKind.TURN,),
        limit: int = 100,
        offset: int = 0,
        after: MemoryRecord | None = None,
        as_of: datetime | str | None = None,
    ) -> builtins.list[MemoryRecord]:
        stored = self._user(user_id)
        anchor = None if after is None else replace(after, user_id=stored)
        records = self.memory.list(
            user_id=stored, session_id=session_id, agent_id=agent_id, kinds=kinds,
            limit=limit, offset=offset, after=anchor, as_of=as_of,
        )  # fmt: skip
        return [self._record(r) for r in records]

    def history(self, record_id: str, *, user_id: str) -> builtins.list[HistoryEvent]:
        events = self.memory.history(record_id, user_id=self._user(user_id))
        return [replace(e, user_id=self.principal.public_user(e.user_id)) for e in events]

    def search(
        self,
        query: str,
        *,
        user_id: str,
        limit: int = 10,
        session_id: str | None = None,
        agent_id: str | None = None,
        question_date: datetime | str | None = None,
        config: SearchConfig | str | None = None,
        as_of: datetime | str | None = None,
        facts: bool = False,
    ) -> builtins.list[Hit]:
        """:meth:`Memory.search`, or with ``facts`` :meth:`Memory.search_facts`."""
        find = self.memory.search_facts if facts else self.memory.search
        hits = find(
            query, user_id=self._user(user_id), limit=limit, session_id=session_id,
            agent_id=agent_id, question_date=question_date, config=config, as_of=as_of,
        )  # fmt: skip
        return [self._hit(h) for h in hits]

    def answer(
        self,
        question: str,
        *,
        user_id: str,
        question_date: datetime | str | None = None,
        budget: int = 3000,
        limit: int = 20,
        config: SearchConfig | str | None = None,
    ) -> Answer:
        stored = self._user(user_id)
        with self._llm():
            found = self.memory.answer(
                question, user_id=stored, question_date=question_date, budget=budget,
                limit=limit, config=config,
            )  # fmt: skip
        return replace(
            found, citations=tuple(self._record(r) for r in found.citations),
            context=tuple(self._record(r) for r in found.context),
        )  # fmt: skip

    def search_sessions(
        self,
        query: str,
        *,
        user_id: str,
        limit: int = 10,
        agent_id: str | None = None,
        question_date: datetime | str | None = None,
        config: SearchConfig | str | None = None,
    ) -> builtins.list[SessionHit]:
        sessions = self.memory.search_sessions(
            query, user_id=self._user(user_id), limit=limit, agent_id=agent_id,
            question_date=question_date, config=config,
        )  # fmt: skip
        return [replace(s, hits=tuple(self._hit(h) for h in s.hits)) for s in sessions]

    def stats(self, *, user_id: str | None = None) -> StoreStats:
        if user_id is None and not self.principal.open:
            raise PermissionDeniedError(
                "store-wide statistics are for the open (keyless) mode; name a user_id"
            )
        found = self.memory.stats(user_id=None if user_id is None else self._user(user_id))
        # the file's size is everyone's: it grows with other tenants' writes
        return found if self.principal.open else replace(found, size_bytes=None)

    def users_page(
        self, *, prefix: str = "", limit: int = 100, after: str | None = None
    ) -> tuple[builtins.list[str], bool]:
        """:meth:`Memory.users` for this principal: its tenant's users only (listed by the
        tenant's stored prefix, which is then stripped), and of those only the ones its users
        pattern allows; with whether more follow. Reads the store a batch at a time until the
        page is full: a narrow pattern over a large tenant reads all of the tenant's ids."""
        limit = check_limit(limit)
        prefix, after = check_user_page(prefix, after)
        room = self.principal.max_user_chars
        if after is not None and len(after) > room:
            raise ScopeError(f"after is longer than {room} characters")
        if len(prefix) > room:
            return [], False  # no user id of this tenant is that long
        base, batch = self.principal.stored_prefix, min(MAX_LIMIT, limit + 1)
        found: builtins.list[str] = []
        cursor = None if after is None else base + after
        while True:
            page = self.memory.users(prefix=base + prefix, limit=batch, after=cursor)
            for stored in page:
                public = self.principal.public_user(stored)
                if self.principal.allows(public):
                    found.append(public)
                    if len(found) > limit:
                        return found[:limit], True
            if len(page) < batch:
                return found, False
            cursor = page[-1]
