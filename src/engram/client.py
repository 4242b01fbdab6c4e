""":class:`Client`: the :class:`~engram.Memory` API, served by an Engram REST server.

Every method has the signature, the return type and the errors of its ``Memory`` twin, so that
switching is one line::

    mem = Memory.open("engram.db")                       # embedded
    mem = Client("http://127.0.0.1:8765", api_key=KEY)   # the same memory, over HTTP

Arguments are checked here first, by the very checks ``Memory`` runs (:mod:`engram.checks`, the
scope, message and date parsers): bad input raises the same error without a request. What only
the server can know (an unknown record, a key's permissions, the store failing) comes back as
the error the server raised (the table in :mod:`engram.remote`).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from engram.checks import (
    MAX_LIMIT,
    check_after,
    check_kinds,
    check_limit,
    check_offset,
    check_query,
    check_record_id,
    check_user_page,
    int_in,
)
from engram.errors import ConfigurationError, InvalidInputError, NotFoundError
from engram.read.config import SearchConfig, resolve_config
from engram.types import (
    Answer,
    HistoryEvent,
    Hit,
    MemoryRecord,
    ProcessReport,
    RecordFilter,
    RecordKind,
    Scope,
    SessionHit,
    StoreStats,
)  # fmt: skip
from engram.write.ingest import DEFAULT_SESSION
from engram.write.messages import Message, parse_datetime, parse_messages

if TYPE_CHECKING:
    import httpx

    from engram.memory import Extract
    from engram.remote import Remote

__all__ = ["Client"]

CLIENT_EXTRA = "pip install 'engram-memory[client]'"
EXTRACT_MODES = ("sync", "background", "off")


def _extract(extract: object) -> str | None:
    """``extract`` checked as ``Memory`` checks it; whether the server has the LLM that
    ``"sync"`` needs only the server knows (ConfigurationError, as from ``Memory``)."""
    if extract is not None and extract not in EXTRACT_MODES:
        raise InvalidInputError(
            f"extract must be one of {', '.join(EXTRACT_MODES)}, got {extract!r}"
        )
    return extract


def _date(value: datetime | str | None, what: str) -> str | None:
    """``value`` checked as ``Memory`` checks it, sent as the caller wrote it (the server
    parses it again, identically); a datetime as ISO 8601."""
    parse_datetime(value, what)
    return value.isoformat() if isinstance(value, datetime) else value


def _message(message: Message) -> dict[str, Any]:
    """A checked message as JSON (its timestamp keeps its offset: it is part of the id of a
    message without one)."""
    return {
        "role": message.role, "content": message.content, "id": message.id,
        "name": message.name, "metadata": dict(message.metadata) or None,
        "timestamp": None if message.timestamp is None else message.timestamp.isoformat(),
    }  # fmt: skip


def _routable(record_id: str) -> str:
    """A record id the server's routes can address. Stored ids are hex digests: one with a '/'
    (which the server decodes before routing) names no record of any user."""
    if "/" in record_id:
        raise NotFoundError(f"no record {record_id!r} for this user")
    return record_id


class Client:
    """Long-term memory on an Engram server (``engram serve``): the :class:`~engram.Memory`
    methods over HTTP. ``api_key`` is sent as ``Authorization: Bearer``; ``timeout`` is in
    seconds per request; ``transport`` is an ``httpx.BaseTransport`` (a proxy, a test double).

    >>> with Client("http://127.0.0.1:8765") as mem:
    ...     mem.search("where does the user live?", user_id="u1")
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            import httpx  # noqa: F401
            import pydantic  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                f"engram.Client needs the 'client' extra ({exc.name} is missing): {CLIENT_EXTRA}"
            ) from None
        if api_key is not None and (
            not isinstance(api_key, str) or not api_key.isascii() or not api_key.isprintable()
            or not api_key.strip() or " " in api_key
        ):  # fmt: skip
            raise ConfigurationError("api_key must be a non-empty string of printable ASCII")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds: {timeout!r}")
        from engram.remote import Remote

        self._remote: Remote = Remote(
            base_url, api_key=api_key, timeout=float(timeout), transport=transport
        )

    @property
    def base_url(self) -> str:
        return self._remote.url

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

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
        """Store messages verbatim (one transaction on the server) and index them; idempotent,
        like :meth:`Memory.add`. Returns the turn record of every message, in order.
        ``extract``: as for :meth:`Memory.add`, with the server's LLM (default: the server's
        ``extract_default``)."""
        Scope(user_id, agent_id, DEFAULT_SESSION if session_id is None else session_id)
        mode = _extract(extract)
        parsed = parse_messages(messages)
        body = {
            "user_id": user_id, "session_id": session_id, "agent_id": agent_id,
            "session_date": _date(session_date, "session_date"), "extract": mode,
            "messages": [{k: v for k, v in _message(m).items() if v is not None} for m in parsed],
        }  # fmt: skip
        return self._remote.add(body)

    def process_pending(self, *, limit: int = 100, user_id: str | None = None) -> ProcessReport:
        """Extract and consolidate facts for up to ``limit`` queued jobs of ``user_id`` with the
        server's LLM (every user's: keyless servers only), each committed on its own."""
        if user_id is not None:
            Scope(user_id)
        return self._remote.process(check_limit(limit), user_id)

    def update(self, record_id: str, text: str, *, user_id: str) -> MemoryRecord:
        """Replace a record's text; its keys are rebuilt and the old text stays in the history."""
        Scope(user_id)
        check_record_id(record_id)
        clean = parse_messages([{"role": "user", "content": text}])[0]
        return self._remote.update(_routable(record_id), clean.content, user_id)

    def delete(self, record_id: str, *, user_id: str) -> builtins.list[str]:
        """Hard-delete one record and the keys built from it; returns the deleted ids."""
        Scope(user_id)
        return self._remote.delete(_routable(check_record_id(record_id)), user_id)

    def forget(self, *, user_id: str, session_id: str | None = None) -> int:
        """Hard-delete everything of a user (or of one session), with index rows and history."""
        Scope(user_id, None, session_id)
        return self._remote.forget(user_id, session_id)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, record_id: str, *, user_id: str) -> MemoryRecord:
        Scope(user_id)
        return self._remote.get(_routable(check_record_id(record_id)), user_id)

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
        """Records in scope, in conversation order; page with ``after=page[-1]`` (one request a
        page, stable while others write). The REST API pages by cursor only, so ``offset``
        is counted here: the skipped records are fetched, 1000 a request, and dropped. Prefer
        ``after``; an offset is for small skips. ``as_of``: as for :meth:`Memory.list`."""
        when = _date(as_of, "as_of")
        where = RecordFilter(user_id, agent_id, session_id, check_kinds(kinds) or tuple(RecordKind))
        limit, skip, anchor = check_limit(limit), check_offset(offset), check_after(after)
        while skip:
            step = min(skip, MAX_LIMIT)
            skipped = self._remote.page(where, limit=step, after=anchor, as_of=when)
            if len(skipped) < step:
                return []
            skip, anchor = skip - step, skipped[-1]
        return self._remote.page(where, limit=limit, after=anchor, as_of=when)

    def history(self, record_id: str, *, user_id: str) -> builtins.list[HistoryEvent]:
        Scope(user_id)
        return self._remote.history(_routable(check_record_id(record_id)), user_id)

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
    ) -> builtins.list[Hit]:
        """The turns most relevant to ``query``, best first, each with per-retriever scores.
        ``as_of``: search memory as it was then."""
        return self._search(query, user_id, limit, session_id, agent_id, question_date, config,
                            as_of, facts=False)  # fmt: skip

    def search_facts(
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
    ) -> builtins.list[Hit]:
        """The facts most relevant to ``query`` (true now, or at ``as_of``), best first."""
        return self._search(query, user_id, limit, session_id, agent_id, question_date, config,
                            as_of, facts=True)  # fmt: skip

    def _search(
        self, query: str, user_id: str, limit: int, session_id: str | None,
        agent_id: str | None, question_date: datetime | str | None,
        config: SearchConfig | str | None, as_of: datetime | str | None, *, facts: bool,
    ) -> builtins.list[Hit]:  # fmt: skip
        RecordFilter(user_id, agent_id, session_id)
        date = _date(question_date, "question_date")
        body = {
            "query": check_query(query), "user_id": user_id, "limit": check_limit(limit),
            "session_id": session_id, "agent_id": agent_id, "question_date": date,
            "as_of": _date(as_of, "as_of"),
        }  # fmt: skip
        resolve_config(config)
        return self._remote.search(body, config, facts=facts)

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
        """Answer ``question`` from memory with the server's LLM, like :meth:`Memory.answer`:
        the answer, the records it cites, the records it was shown, and the usage."""
        if not int_in(budget, 100, 200_000):
            raise InvalidInputError("budget must be an integer from 100 to 200000 tokens")
        Scope(user_id)
        body = {
            "question": check_query(question), "user_id": user_id, "budget": budget,
            "limit": check_limit(limit), "question_date": _date(question_date, "question_date"),
        }  # fmt: skip
        resolve_config(config)
        return self._remote.answer(body, config)

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
        """Sessions ranked by their best turns (see ``SearchConfig.session_aggregation``)."""
        check_limit(limit)
        resolve_config(config)
        RecordFilter(user_id, agent_id)
        date = _date(question_date, "question_date")
        body = {
            "query": check_query(query), "user_id": user_id, "limit": limit,
            "agent_id": agent_id, "question_date": date,
        }  # fmt: skip
        return self._remote.search_sessions(body, config)

    def users(
        self, *, prefix: str = "", limit: int = 100, after: str | None = None
    ) -> builtins.list[str]:
        """The users that have records (with an API key: the users of its tenant that it may
        act for), starting with ``prefix``, in code point order; page with ``after``."""
        limit = check_limit(limit)
        prefix, after = check_user_page(prefix, after)
        return self._remote.users(prefix, limit, after)

    def stats(self, *, user_id: str | None = None) -> StoreStats:
        """Counts for one user (with an API key a user is required), or for the whole store."""
        if user_id is not None:
            Scope(user_id)
        return self._remote.stats(user_id)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self._remote.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
