"""The :class:`Memory` facade: wiring between the validated boundary, the pipelines and a store."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from engram.checks import (
    MAX_LIMIT,
    check_after,
    check_kinds,
    check_limit,
    check_offset,
    check_query,
    check_record_id,
    int_in,
)
from engram.embed.base import CachedQueryEmbedder, Embedder, Vectors, embed_texts
from engram.errors import InvalidInputError, NotFoundError
from engram.read.config import SearchConfig, resolve_config
from engram.read.retrieve import aggregate_sessions
from engram.read.retrieve import search as run_search
from engram.store.base import Store
from engram.types import (
    HistoryEvent,
    Hit,
    MemoryRecord,
    RecordFilter,
    RecordKind,
    Scope,
    SessionHit,
    StoreStats,
)  # fmt: skip
from engram.write.ingest import DEFAULT_SESSION
from engram.write.messages import MAX_CONTENT_CHARS, parse_datetime, parse_messages
from engram.write.pipeline import SpanVectors, WritePipeline

__all__ = ["Memory"]

DEFAULT_WINDOW = 3  # turns per window key; see docs/benchmarks.md for the ablation


class Memory:
    """Long-term memory for one store. Every call names the ``user_id`` it acts for.

    Thread-safe: one Memory may serve many threads (a server's request handlers) at once; its
    store and embedder must be (those of Engram are).

    Index keys: every turn; a round key for each user turn answered by an assistant turn; a
    window key for each run of ``window_size`` consecutive turns (0: none); with
    ``sentence_keys``, a key for each sentence of a turn that has several. Round and window keys
    get the mean of their turns' vectors (``span_vectors="mean"``, no model call) or the
    embedding of their joined text (``"embed"``).

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
    ) -> None:
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 0:
            raise InvalidInputError("window_size must be a non-negative integer (0: no windows)")
        if not isinstance(sentence_keys, bool):
            raise InvalidInputError("sentence_keys must be True or False")
        if not int_in(max_content_chars, 1):
            raise InvalidInputError("max_content_chars must be a positive integer")
        if span_vectors not in ("mean", "embed"):
            raise InvalidInputError("span_vectors must be 'mean' or 'embed'")
        self.store = store
        self.embedder = embedder
        self._query_vector = CachedQueryEmbedder(embedder)
        self._max_chars = max_content_chars
        self._bound = False
        self._writer = WritePipeline(
            store, self._embed, lambda: embedder.dim, window_size, sentence_keys, span_vectors
        )

    @classmethod
    def open(
        cls,
        path: str | Path = "engram.db",
        *,
        embedder: Embedder | None = None,
        read_only: bool | None = None,
        timeout: float = 30.0,
    ) -> Memory:
        """The embedded default: a SQLite file (or ``":memory:"``) and, unless another embedder
        is given, the bundled all-MiniLM-L6-v2 model on the CPU. ``read_only`` and ``timeout``
        go to :class:`~engram.store.sqlite.SqliteStore` (None: read-only if the file is not
        writable; seconds to wait for another process's lock). A ``postgresql://`` (or
        ``postgres://``) URL opens a :class:`~engram.store.postgres.PostgresStore` instead (the
        ``postgres`` extra; docs/postgres.md)."""
        from engram.embed.local import SentenceTransformerEmbedder
        from engram.store.postgres import is_postgres_url

        store: Store
        if is_postgres_url(path):
            from engram.store.postgres import PostgresStore

            store = PostgresStore(str(path), read_only=read_only, timeout=timeout)
        else:
            from engram.store.sqlite import SqliteStore

            store = SqliteStore(path, read_only=read_only, timeout=timeout)
        return cls(store=store, embedder=embedder or SentenceTransformerEmbedder())

    def _embed(self, texts: Sequence[str]) -> Vectors:
        # Threads may bind at once before _bound is set: harmless, bind_embedder checks again
        # under the store's write lock and writes the embedder once.
        if not self._bound:
            self.store.bind_embedder(self.embedder.name, self.embedder.dim)
            self._bound = True
        return embed_texts(self.embedder, texts)

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
    ) -> builtins.list[MemoryRecord]:
        """Store messages verbatim (one transaction) and index them as turn, round, window and
        sentence keys. Idempotent: a message already stored (same id, or same
        role/content/timestamp) is not stored again. Returns the turn record of every message,
        in order."""
        scope = Scope(user_id, agent_id, DEFAULT_SESSION if session_id is None else session_id)
        session = scope.session_id or DEFAULT_SESSION
        parsed = parse_messages(messages, limit=self._max_chars)
        date = parse_datetime(session_date, "session_date")
        now = datetime.now(UTC)
        return self._writer.append(
            parsed, user_id=user_id, session_id=session, agent_id=agent_id,
            default_time=date or now, now=now,
        )  # fmt: skip

    def update(self, record_id: str, text: str, *, user_id: str) -> MemoryRecord:
        """Replace a record's text; the round and window keys built from it are rebuilt and its
        sentence keys replaced, all in one transaction. The old text stays in the history."""
        Scope(user_id)
        check_record_id(record_id)
        clean = parse_messages([{"role": "user", "content": text}], limit=self._max_chars)[0]
        return self._writer.update(user_id, record_id, clean.content, now=datetime.now(UTC))

    def delete(self, record_id: str, *, user_id: str) -> builtins.list[str]:
        """Hard-delete one record and the round, window and sentence keys built from it; returns
        the deleted ids."""
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
    ) -> builtins.list[MemoryRecord]:
        """Records in scope, in conversation order (turns only unless ``kinds`` says otherwise).
        Page with ``after=page[-1]``: the records after that one, stable while others are added
        or deleted (``offset`` counts from there)."""
        where = RecordFilter(user_id, agent_id, session_id, check_kinds(kinds))
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
    ) -> builtins.list[Hit]:
        """The turns most relevant to ``query``, best first, each with per-retriever scores."""
        scope = RecordFilter(user_id, agent_id, session_id)
        now = parse_datetime(question_date, "question_date") or datetime.now(UTC)
        return run_search(
            self.store, self._embed_query, check_query(query), scope,
            limit=check_limit(limit), config=resolve_config(config), now=now,
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
        """Sessions ranked by their best turns (see ``SearchConfig.session_aggregation``)."""
        check_limit(limit)
        cfg = resolve_config(config)
        hits = self.search(
            query, user_id=user_id, limit=MAX_LIMIT, agent_id=agent_id,
            question_date=question_date, config=cfg,
        )  # fmt: skip
        sessions = aggregate_sessions(hits, method=cfg.session_aggregation, top=cfg.session_top)
        return sessions[: check_limit(limit)]

    def stats(self, *, user_id: str | None = None) -> StoreStats:
        if user_id is not None:
            Scope(user_id)
        return self.store.stats(user_id)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
