"""The :class:`Memory` facade: wiring between the validated boundary, the pipelines and a store."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

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
from engram.embed.base import CachedQueryEmbedder, Embedder, Vectors, embed_texts
from engram.errors import ConfigurationError, InvalidInputError, NotFoundError
from engram.read.config import SearchConfig, resolve_config
from engram.read.retrieve import aggregate_sessions
from engram.read.retrieve import search as run_search
from engram.store.base import Store
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
from engram.write.messages import MAX_CONTENT_CHARS, parse_datetime, parse_messages
from engram.write.pipeline import SpanVectors, WritePipeline
from engram.write.reembed import ReembedReport, reembed

if TYPE_CHECKING:
    from engram.llm.base import LLM
    from engram.write.facts import FactPipeline

__all__ = ["Memory"]

DEFAULT_WINDOW = 3  # turns per window key; see docs/benchmarks.md for the ablation
Extract = Literal["sync", "background", "off"]
_EXTRACT = ("sync", "background", "off")


def _now() -> datetime:
    return datetime.now(UTC)


class Memory:
    """Long-term memory for one store. Every call names the ``user_id`` it acts for.

    Thread-safe: one Memory may serve many threads (a server's request handlers) at once; its
    store and embedder must be (those of Engram are).

    Index keys: every turn; a round key for each user turn answered by an assistant turn; a
    window key for each run of ``window_size`` consecutive turns (0: none); with
    ``sentence_keys``, a key for each sentence of a turn that has several. Round and window keys
    get the mean of their turns' vectors (``span_vectors="mean"``, no model call) or the
    embedding of their joined text (``"embed"``).

    With an ``llm`` (see docs/llm.md), adds also extract facts: ``extract="sync"`` (the
    default with an LLM) right after the turns are stored, ``"background"`` later, by
    :meth:`process_pending` or ``engram worker``; ``"off"`` (the default without one) not at
    all. Without an LLM everything else works unchanged.

    >>> mem = Memory(store=SqliteStore("engram.db"), embedder=SentenceTransformerEmbedder())
    """

    def __init__(
        self,
        *,
        store: Store,
        embedder: Embedder,
        window_size: int = DEFAULT_WINDOW,
        sentence_keys: bool = True,
        span_vectors: SpanVectors = "mean",
        max_content_chars: int = MAX_CONTENT_CHARS,
        llm: LLM | None = None,
        extract: Extract | None = None,
        extraction_batch: int = 20,
    ) -> None:
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 0:
            raise InvalidInputError("window_size must be a non-negative integer (0: no windows)")
        if not isinstance(sentence_keys, bool):
            raise InvalidInputError("sentence_keys must be True or False")
        if not int_in(max_content_chars, 1):
            raise InvalidInputError("max_content_chars must be a positive integer")
        if span_vectors not in ("mean", "embed"):
            raise InvalidInputError("span_vectors must be 'mean' or 'embed'")
        if not int_in(extraction_batch, 1, 500):
            raise InvalidInputError("extraction_batch must be an integer from 1 to 500")
        self.llm = llm
        self._extract: Extract = self._check_extract(extract) or ("sync" if llm else "off")
        self._facts: FactPipeline | None = None
        if llm is not None:
            from engram.write.facts import FactPipeline

            self._facts = FactPipeline(store, llm, self._embed, batch=extraction_batch)
        self.store = store
        self.embedder = embedder
        self._query_vector = CachedQueryEmbedder(embedder)
        self._max_chars = max_content_chars
        self._bound = False
        self._writer = WritePipeline(
            store, self._embed, lambda: self.embedder.dim, window_size, sentence_keys, span_vectors
        )

    @classmethod
    def open(
        cls,
        path: str | Path = "engram.db",
        *,
        embedder: Embedder | None = None,
        read_only: bool | None = None,
        timeout: float = 30.0,
        llm: LLM | None = None,
    ) -> Memory:
        """The embedded default: a SQLite file (or ``":memory:"``) and, unless another embedder
        is given, the bundled all-MiniLM-L6-v2 model on the CPU. ``read_only`` and ``timeout``
        go to :class:`~engram.store.sqlite.SqliteStore` (None: read-only if the file is not
        writable; seconds to wait for another process's lock). A ``postgresql://`` (or
        ``postgres://``) URL opens a :class:`~engram.store.postgres.PostgresStore` instead (the
        ``postgres`` extra; docs/postgres.md)."""
        from engram.embed.local import SentenceTransformerEmbedder
        from engram.store import open_store

        store = open_store(path, read_only=read_only, timeout=timeout)
        return cls(store=store, embedder=embedder or SentenceTransformerEmbedder(), llm=llm)

    def _embed(self, texts: Sequence[str]) -> Vectors:
        # Threads may bind at once before _bound is set: harmless, bind_embedder checks again
        # under the store's write lock and writes the embedder once.
        if not self._bound:
            self.store.bind_embedder(self.embedder.name, self.embedder.dim)
            self._bound = True
        return embed_texts(self.embedder, texts)

    def _check_extract(self, extract: object) -> Extract | None:
        if extract is None:
            return None
        if extract not in _EXTRACT:
            raise InvalidInputError(
                f"extract must be one of {', '.join(_EXTRACT)}, got {extract!r}"
            )
        if extract == "sync" and self.llm is None:
            raise ConfigurationError("extract='sync' needs an LLM (Memory(llm=...), docs/llm.md)")
        return extract  # type: ignore[return-value]

    def _pipeline(self) -> FactPipeline:
        if self._facts is None:
            raise ConfigurationError("this needs an LLM: Memory(llm=...) (see docs/llm.md)")
        return self._facts

    def _embed_query(self, query: str) -> Vectors:
        if not self._bound:
            self._embed([])
        return self._query_vector(query)

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
        """Store messages verbatim (one transaction) and index them as turn, round, window and
        sentence keys. Idempotent: a message already stored (same id, or same
        role/content/timestamp) is not stored again. Returns the turn record of every message,
        in order.

        ``extract`` (default: the Memory's): queue the new turns for fact extraction in the
        same transaction, and with ``"sync"`` process the user's queue before returning. An
        LLM failure then leaves the job queued with its error (see :meth:`stats`); the turns
        are stored either way."""
        scope = Scope(user_id, agent_id, DEFAULT_SESSION if session_id is None else session_id)
        session = scope.session_id or DEFAULT_SESSION
        mode = self._check_extract(extract) or self._extract
        parsed = parse_messages(messages, limit=self._max_chars)
        date = parse_datetime(session_date, "session_date")
        now = datetime.now(UTC)
        turns = self._writer.append(
            parsed, user_id=user_id, session_id=session, agent_id=agent_id,
            default_time=date or now, now=now, queue=mode != "off",
        )  # fmt: skip
        if mode == "sync":
            self._pipeline().process_pending(now=_now, limit=MAX_LIMIT, user_id=user_id)
        return turns

    def process_pending(self, *, limit: int = 100, user_id: str | None = None) -> ProcessReport:
        """Extract and consolidate facts for up to ``limit`` queued jobs (of one user, or of
        everyone), each committed on its own; failed jobs stay queued with their error."""
        if user_id is not None:
            Scope(user_id)
        return self._pipeline().process_pending(now=_now, limit=check_limit(limit), user_id=user_id)

    def update(self, record_id: str, text: str, *, user_id: str) -> MemoryRecord:
        """Replace a record's text; the round and window keys built from it are rebuilt and its
        sentence keys replaced, all in one transaction. The old text stays in the history."""
        Scope(user_id)
        check_record_id(record_id)
        clean = parse_messages([{"role": "user", "content": text}], limit=self._max_chars)[0]
        return self._writer.update(user_id, record_id, clean.content, now=datetime.now(UTC))

    def delete(self, record_id: str, *, user_id: str) -> builtins.list[str]:
        """Hard-delete one record, the round, window and sentence keys built from it and the facts
        that cite it; returns the deleted ids."""
        Scope(user_id)
        return self.store.delete(user_id, check_record_id(record_id))

    def forget(self, *, user_id: str, session_id: str | None = None) -> int:
        """Hard-delete everything of a user (or of one session), with index rows and history."""
        Scope(user_id, None, session_id)
        return self.store.forget(user_id, session_id=session_id)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, record_id: str, *, user_id: str) -> MemoryRecord:
        Scope(user_id)
        found = self.store.get_many(user_id, [check_record_id(record_id)])
        if not found:
            raise NotFoundError(f"no record {record_id!r} for this user")
        return found[0]

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
        """Records in scope, in conversation order (turns only unless ``kinds`` says otherwise).
        Page with ``after=page[-1]``: the records after that one, stable while others are added
        or deleted (``offset`` counts from there). ``as_of``: what was part of memory then
        (facts true then, other records said by then); without it, every record, retired
        facts included."""
        when = parse_datetime(as_of, "as_of")
        where = RecordFilter(user_id, agent_id, session_id, check_kinds(kinds), when)
        limit, offset, after = check_limit(limit), check_offset(offset), check_after(after)
        return self.store.list(where, limit=limit, offset=offset, after=after)

    def history(self, record_id: str, *, user_id: str) -> builtins.list[HistoryEvent]:
        Scope(user_id)
        return self.store.history(user_id, check_record_id(record_id))

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
        ``as_of``: search memory as it was then (turns said by then; facts true then, as keys)."""
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
        scope = RecordFilter(user_id, agent_id, session_id)
        now = parse_datetime(question_date, "question_date") or datetime.now(UTC)
        return run_search(
            self.store, self._embed_query, check_query(query), scope,
            limit=check_limit(limit), config=resolve_config(config), now=now,
            as_of=parse_datetime(as_of, "as_of"), facts=facts,
        )  # fmt: skip

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
        """Answer ``question`` from memory with the LLM: the best facts (true at the question
        date) with their source turns and the best turns, within ``budget`` estimated tokens,
        in time order. Returns the answer, the records it cites and what the call cost."""
        from engram.read.answer import answer

        if not int_in(budget, 100, 200_000):
            raise InvalidInputError("budget must be an integer from 100 to 200000 tokens")
        llm, query, limit = self._pipeline().llm, check_query(question), check_limit(limit)
        asked = parse_datetime(question_date, "question_date")

        def find(facts: bool) -> builtins.list[Hit]:
            return self._search(query, user_id, limit, None, None, asked, config, asked,
                                facts=facts)  # fmt: skip

        result = answer(
            llm, query, find(True), find(False),
            lambda ids: self.store.get_many(user_id, ids), question_date=asked, budget=budget,
        )  # fmt: skip
        self.store.record_usage(user_id, "answer", result.usage)
        return result

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
        cfg = resolve_config(config)
        hits = self.search(
            query, user_id=user_id, limit=MAX_LIMIT, agent_id=agent_id,
            question_date=question_date, config=cfg,
        )  # fmt: skip
        sessions = aggregate_sessions(hits, method=cfg.session_aggregation, top=cfg.session_top)
        return sessions[: check_limit(limit)]

    def users(
        self, *, prefix: str = "", limit: int = 100, after: str | None = None
    ) -> builtins.list[str]:
        """The ids of the users that have records, starting with ``prefix``, in code point
        order; page with ``after=page[-1]``. Every user's: for the operator (a server's tenant
        key sees its own tenant's users only)."""
        limit = check_limit(limit)
        prefix, after = check_user_page(prefix, after)
        return self.store.users(prefix=prefix, limit=limit, after=after)

    def stats(self, *, user_id: str | None = None) -> StoreStats:
        if user_id is not None:
            Scope(user_id)
        return self.store.stats(user_id)

    def reembed(
        self, embedder: Embedder, *, progress: Callable[[int, int], None] | None = None
    ) -> ReembedReport:
        """Re-index the whole store (every user) with ``embedder`` and use it from now on:
        every record's vector is made again with the new model, then all are swapped in one
        transaction, so searches see the old vectors or the new ones, never a mix. Writes may
        go on meanwhile (their records are embedded before the swap). ``progress(done,
        total)`` is called as records are embedded. Other Memory objects and processes on
        the store then get a ``ConfigurationError`` on their next add, update or search until they
        are opened with the new embedder. For the operator: it crosses users."""
        if not isinstance(embedder.name, str) or not embedder.name:
            raise InvalidInputError("the new embedder needs a name")
        report = reembed(
            self.store, lambda texts: embed_texts(embedder, texts), embedder.name,
            embedder.dim, span_mode=self._writer.span_mode, progress=progress,
        )  # fmt: skip
        self.embedder = embedder
        self._query_vector = CachedQueryEmbedder(embedder)
        self._bound = True
        return report

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
