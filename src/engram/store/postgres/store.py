"""The PostgreSQL + pgvector store: one database (or one schema of it) shared by any number of
processes, through a connection pool per process."""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
from psycopg import Connection, IsolationLevel

from engram.embed.base import Vectors
from engram.errors import ConfigurationError, ConflictError, NotFoundError, ScopeError, StoreError
from engram.store.base import FactChange, Job, ScoredId, SessionTail, Sources
from engram.store.lexical import query_stems
from engram.store.postgres import facts, hnsw, lexical, ops, vectors
from engram.store.postgres.connect import (
    connect_once,
    describe,
    extension_schema,
    open_pool,
    translate_errors,
)
from engram.store.postgres.readers import (
    check_embedder,
    get_vectors,
    history,
    last_turns,
    list_records,
    list_users,
    records_by_id,
    speakers,
    store_stats,
)
from engram.store.postgres.reembed import check_bound, replace_all
from engram.store.postgres.schema import (
    MIGRATIONS,
    check_schema_name,
    lock_schema,
    migrate,
    schema_version,
)
from engram.types import (
    DERIVED_KEY_KINDS,
    HistoryEvent,
    KeyRef,
    MemoryRecord,
    RecordFilter,
    RecordKind,
    StoreStats,
    Usage,
)

__all__ = ["PostgresStore"]

log = logging.getLogger(__name__)

# What a hard delete of a record takes with it (as SqliteStore): the index keys built from it
# and the derived memories (facts, summaries) that cite it.
_DELETED_WITH_SOURCE = (*DERIVED_KEY_KINDS, RecordKind.FACT, RecordKind.SUMMARY)


class PostgresStore:
    """A :class:`~engram.store.base.Store` in PostgreSQL with pgvector (docs/postgres.md).

    ``url``: a libpq URL (``postgresql://user:password@host:port/dbname``) of a role that is
    neither a superuser nor BYPASSRLS (row-level security does not apply to those). The
    migrations run on open (:mod:`~engram.store.postgres.schema`), unless ``read_only``.
    ``schema``: the PostgreSQL schema that holds Engram's tables. ``pool_size``: the most
    connections this store opens (each call holds one for its transaction). ``timeout``:
    seconds to wait for a connection, and for a lock held by another writer
    (:class:`~engram.StoreLockedError` after that). ``exact_below``: users with fewer vectors
    than this are searched exactly (:mod:`~engram.store.postgres.vectors`); a user who has that
    many gets an HNSW index of their own (:mod:`~engram.store.postgres.hnsw`), searched with
    ``hnsw.ef_search`` of at least ``ef_search``. ``vector_index=False`` makes no HNSW index
    (every search is exact; a large user's writes are faster, the searches slower).

    Thread-safe and process-safe: any number of stores, in any processes, may share one
    database. Writes that append to or change a session take that session's advisory lock, so
    the conditional writes (``SessionTail``, ``Sources``) are atomic across processes.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "engram",
        pool_size: int = 8,
        timeout: float = 30.0,
        read_only: bool | None = None,
        exact_below: int = 20_000,
        ef_search: int = 100,
        vector_index: bool = True,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise StoreError("timeout must be a positive number of seconds")
        self.url = url
        self.where = describe(url)
        self.schema = check_schema_name(schema)
        self.read_only = bool(read_only)
        self.exact_below = exact_below
        self.ef_search = ef_search
        self.vector_index = vector_index
        self._timeout = float(timeout)
        self._lock = threading.Lock()
        self._embedder: str | None = None  # bound: checked by each write of vectors
        with translate_errors(self.where, timeout=self._timeout):
            with connect_once(url, timeout=self._timeout) as conn:
                self._prepare(conn)
                ext = extension_schema(conn)
            self._pool = open_pool(
                url, schema=self.schema, ext_schema=ext, timeout=self._timeout,
                min_size=1, max_size=max(1, pool_size),
            )  # fmt: skip
        try:
            with self._reading(None) as conn:
                self._dim, self._indexed = self._read_dim(conn)
        except BaseException:
            self._pool.close()
            raise

    def _prepare(self, conn: Connection[Any]) -> None:
        if not self.read_only:
            migrate(conn, self.schema)
            return
        if schema_version(conn, self.schema) < len(MIGRATIONS):
            raise StoreError(
                f"{self.where} (schema {self.schema!r}) is opened read-only and its schema is "
                "not up to date: open it writable once"
            )

    def _read_dim(self, conn: Connection[Any]) -> tuple[int | None, bool]:
        row = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        dim = None if row is None else int(row[0])
        return dim, self.vector_index and dim is not None and dim <= hnsw.HALFVEC_MAX_DIM

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _reading(
        self, user_id: str | None, *, all_users: bool = False
    ) -> Iterator[Connection[Any]]:
        """A connection in one read transaction, acting for ``user_id`` (None: for nobody, or
        for every user's SELECTs with ``all_users``). REPEATABLE READ: everything read inside
        comes from one snapshot (a user's BM25 totals and postings agree; a read-only
        transaction never fails to serialize). Writes (:meth:`_writing`) are READ COMMITTED:
        once they hold their locks, each statement sees what committed before."""
        with self._transaction(user_id, all_users=all_users, snapshot=True) as conn:
            yield conn

    @contextmanager
    def _transaction(
        self, user_id: str | None, *, all_users: bool = False, snapshot: bool = False
    ) -> Iterator[Connection[Any]]:
        with (
            translate_errors(self.where, timeout=self._timeout),
            self._pool.connection() as conn,
        ):
            # psycopg's BEGIN carries these (no statement of their own)
            conn.isolation_level = IsolationLevel.REPEATABLE_READ if snapshot else None
            conn.read_only = True if snapshot else None
            with conn.transaction():
                if user_id is not None or all_users:
                    conn.execute(
                        "SELECT set_config('engram.user_id', %s, true), "
                        "set_config('engram.all_users', %s, true)",
                        (user_id or "", "on" if all_users else "off"),
                    )
                yield conn

    @contextmanager
    def _writing(self, user_id: str | None, *, vectors: bool = False) -> Iterator[Connection[Any]]:
        """A write transaction acting for ``user_id``; one that writes ``vectors`` checks at its
        end that the store is still bound to this object's embedder (erasure never waits)."""
        if self.read_only:
            raise StoreError(f"{self.where} is opened read-only; nothing was written")
        with self._transaction(user_id) as conn:
            yield conn
            if vectors and self._embedder is not None:  # last: a re-index committed meanwhile
                check_bound(conn, self.where, self._embedder)

    def _check(self, records: Sequence[MemoryRecord], vectors_: Vectors) -> None:
        if len(records) != len(vectors_):
            raise StoreError(f"{len(records)} records but {len(vectors_)} vectors")
        if self._dim is not None and len(records) and vectors_.shape[1] != self._dim:
            raise ConfigurationError(f"vectors have dimension {vectors_.shape[1]}, not {self._dim}")

    # -- writes ---------------------------------------------------------------------------------

    def bind_embedder(self, name: str, dim: int) -> None:
        with self._reading(None, all_users=True) as conn:
            recorded = check_embedder(conn, self.where, name, dim)
        if not recorded and not self.read_only:
            with self._transaction(None, all_users=True) as conn:
                lock_schema(conn, self.schema)
                if not check_embedder(conn, self.where, name, dim):  # again, under the lock
                    for key, value in (("embedder", name), ("dim", str(dim))):
                        conn.execute(
                            "INSERT INTO meta VALUES (%s, %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (key, value),
                        )
        self._dim, self._embedder = dim, name
        self._indexed = self.vector_index and dim <= hnsw.HALFVEC_MAX_DIM

    def replace_vectors(
        self, name: str, dim: int, ids: Sequence[str], vectors: Vectors, digests: Sequence[int]
    ) -> builtins.list[tuple[str, str]]:
        if self.read_only:
            raise StoreError(f"{self.where} is opened read-only; nothing was written")
        with self._transaction(None, all_users=True) as conn:
            lock_schema(conn, self.schema)  # (a re-index replaces every vector, whatever bound)
            missing, users = replace_all(conn, self.schema, name, dim, ids, vectors, digests)
        if not missing:
            self._dim, self._embedder = dim, name
            self._indexed = self.vector_index and dim <= hnsw.HALFVEC_MAX_DIM
            self._index_users(set(users))
        return missing

    def _index_users(self, users: set[str]) -> None:
        """Build the HNSW index of each of ``users`` who has reached ``exact_below`` vectors and
        has no valid one (after the write committed: :mod:`~engram.store.postgres.hnsw`). The
        write is stored whatever happens here: a failure is logged, the next add tries again."""
        if not self._indexed or self._dim is None:
            return
        try:
            for user_id in sorted(users):
                with self._reading(user_id) as conn:
                    if not hnsw.wanted(conn, self.schema, user_id, self.exact_below):
                        continue
                with (
                    translate_errors(self.where, timeout=self._timeout),
                    self._pool.connection() as c,
                ):
                    hnsw.ensure(c, self.schema, user_id, self._dim)
        except StoreError as exc:
            log.warning("the HNSW index of a user was not checked or built: %s", exc)

    def add(
        self,
        records: Sequence[MemoryRecord],
        vectors: Vectors,
        *,
        expect: SessionTail | None = None,
        jobs: Sequence[Job] = (),
    ) -> builtins.list[MemoryRecord]:
        self._check(records, vectors)
        with self._writing(None, vectors=True) as conn:
            sessions = {(r.user_id, r.session_id) for r in records if r.kind is RecordKind.TURN}
            if expect is not None:
                sessions.add((expect.user_id, expect.session_id))
                ops.lock_sessions(conn, sessions)
                ops.as_user(conn, expect.user_id)
                ops.check_tail(conn, expect)
            else:
                ops.lock_sessions(conn, sessions)
            inserted = ops.insert_records(conn, records, vectors)
            if expect is not None and len(inserted) != len({r.id for r in records}):
                raise ConflictError("records of this add were stored meanwhile")
            facts.enqueue(conn, jobs)
        self._index_users({record.user_id for record, _ in inserted})
        return [record for record, _ in inserted]

    def update(
        self,
        user_id: str,
        texts: Sequence[tuple[str, str]],
        vectors: Vectors,
        *,
        drop: Sequence[str] = (),
        add: Sequence[MemoryRecord] = (),
        add_vectors: Vectors | None = None,
        expect: Sources | None = None,
    ) -> builtins.list[MemoryRecord]:
        if len(texts) != len(vectors):
            raise StoreError(f"{len(texts)} updates but {len(vectors)} vectors")
        fresh = np.zeros((0, self._dim or 0), np.float32) if add_vectors is None else add_vectors
        self._check(add, fresh)
        if any(r.user_id != user_id for r in add):
            raise ScopeError("update can only add records of the user it acts for")
        with self._writing(user_id, vectors=True) as conn:
            touched = records_by_id(conn, user_id, [i for i, _ in texts] + list(drop))
            ops.lock_sessions(conn, [(user_id, r.session_id) for r in touched])
            if expect is not None and texts:
                ops.check_sources(conn, user_id, texts[0][0], expect)
            updated = ops.update_texts(conn, user_id, texts, vectors)
            dropped = [ops.get_record(conn, user_id, record_id) for record_id in drop]
            ops.delete_rows(conn, user_id, list(drop))
            ops.write_history(conn, [(r, "DELETE", None, None) for r in dropped])
            ops.insert_records(conn, add, fresh)
        return updated

    def delete(self, user_id: str, record_id: str) -> builtins.list[str]:
        with self._writing(user_id) as conn:
            record = ops.get_record(conn, user_id, record_id)
            ops.lock_sessions(conn, [(user_id, record.session_id)])
            record = ops.get_record(conn, user_id, record_id, lock=True)
            derived = ops.derived(conn, user_id, record_id)
            keys = [r for r in derived if r.kind in _DELETED_WITH_SOURCE]
            doomed = [record_id, *(r.id for r in keys)]
            ops.delete_rows(conn, user_id, doomed)
            ops.write_history(conn, [(gone, "DELETE", None, None) for gone in (record, *keys)])
        return doomed

    def forget(self, user_id: str, *, session_id: str | None = None) -> int:
        with self._writing(user_id) as conn:
            facts.forget_jobs(conn, user_id, session_id)
            if session_id is not None:
                ops.lock_sessions(conn, [(user_id, session_id)])
                return len(ops.forget_session(conn, user_id, session_id))
            count = ops.forget_user(conn, user_id)
        try:  # the rows are gone (committed); an index left behind holds none of them
            with translate_errors(self.where, timeout=self._timeout), self._pool.connection() as c:
                hnsw.drop(c, self.schema, user_id)
        except StoreError as exc:
            log.warning("the HNSW index of a forgotten user was not dropped: %s", exc)
        return count

    # -- reads ----------------------------------------------------------------------------------

    def get_many(self, user_id: str, ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        with self._reading(user_id) as conn:
            found = {r.id: r for r in records_by_id(conn, user_id, ids)}
        return [found[i] for i in ids if i in found]

    def get_refs(self, user_id: str, ids: Sequence[str]) -> builtins.list[KeyRef]:
        with self._reading(user_id) as conn:
            found = {r.id: r for r in records_by_id(conn, user_id, ids, refs=True)}
        return [found[i] for i in ids if i in found]

    def get_vectors(self, user_id: str, ids: Sequence[str]) -> Vectors:
        with self._reading(user_id) as conn:
            found = get_vectors(conn, user_id, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFoundError(f"no record {missing[0]!r} for this user")
        rows = [found[i] for i in ids]
        return np.vstack(rows) if rows else np.zeros((0, self._dim or 0), dtype=np.float32)

    def last_turns(self, user_id: str, session_id: str, n: int) -> builtins.list[MemoryRecord]:
        with self._reading(user_id) as conn:
            return last_turns(conn, user_id, session_id, n)

    def derived_from(self, user_id: str, record_id: str) -> builtins.list[MemoryRecord]:
        with self._reading(user_id) as conn:
            return ops.derived(conn, user_id, record_id)

    def list(
        self,
        where: RecordFilter,
        *,
        limit: int,
        offset: int = 0,
        after: MemoryRecord | None = None,
    ) -> builtins.list[MemoryRecord]:
        with self._reading(where.user_id) as conn:
            return list_records(conn, where, limit, offset, after)

    def history(self, user_id: str, record_id: str) -> builtins.list[HistoryEvent]:
        with self._reading(user_id) as conn:
            events = history(conn, user_id, record_id)
        if not events:
            raise NotFoundError(f"no record {record_id!r} for this user")
        return events

    def speakers(self, user_id: str) -> frozenset[str]:
        with self._reading(user_id) as conn:
            return speakers(conn, user_id)

    def users(
        self, *, prefix: str = "", limit: int, after: str | None = None
    ) -> builtins.list[str]:
        with self._reading(None, all_users=True) as conn:  # RLS: every user's rows, SELECT only
            return list_users(conn, prefix, limit, after)

    def lexical_search(
        self, query: str, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        stems = query_stems(query)
        if not stems or limit <= 0:
            return []
        with self._reading(where.user_id) as conn:
            return lexical.search_ids(conn, where, stems, limit)

    def vector_search(
        self, vector: Vectors, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        with self._reading(where.user_id) as conn:
            if self._embedder is not None:  # not re-indexed by another process since bound
                check_bound(conn, self.where, self._embedder)
            return vectors.search(
                conn, vector, where, limit, dim=self._dim, schema=self.schema,
                indexed=self._indexed, exact_below=self.exact_below, ef_search=self.ef_search,
            )  # fmt: skip

    def stats(self, user_id: str | None = None) -> StoreStats:
        with self._reading(user_id, all_users=user_id is None) as conn:
            counts = store_stats(conn, user_id, self._dim)
            pending, failed, usage = facts.job_stats(conn, user_id)
        return replace(counts, pending_jobs=pending, failed_jobs=failed, llm=usage)

    # -- the LLM layer --------------------------------------------------------------------------

    def consolidate(self, change: FactChange, vectors_: Vectors) -> builtins.list[MemoryRecord]:
        added = len(change.add)
        if len(vectors_) != added + len(change.rewrite):
            raise StoreError(f"{added + len(change.rewrite)} facts but {len(vectors_)} vectors")
        self._check(change.add, vectors_[:added])
        with self._writing(change.user_id, vectors=True) as conn:
            ops.lock_sessions(conn, [(change.user_id, r.session_id) for r in change.add])
            written = facts.apply_change(conn, change, vectors_)
        self._index_users({change.user_id} if change.add else set())
        return written

    def claim_jobs(
        self, *, now: datetime, lease_seconds: float, limit: int, user_id: str | None = None
    ) -> builtins.list[Job]:
        if self.read_only:
            raise StoreError(f"{self.where} is opened read-only; nothing was written")
        with self._transaction(user_id, all_users=user_id is None) as conn:
            return facts.claim(conn, now, lease_seconds, limit, user_id)

    def release_job(self, job_id: int, *, error: str, retry_at: datetime) -> None:
        if self.read_only:
            raise StoreError(f"{self.where} is opened read-only; nothing was written")
        with self._transaction(None, all_users=True) as conn:
            facts.release(conn, job_id, error, retry_at)

    def record_usage(self, user_id: str, purpose: str, usage: Usage) -> None:
        with self._writing(user_id) as conn:
            facts.add_usage(conn, user_id, purpose, usage)

    def close(self) -> None:
        """Close the pool (waits for the calls in progress). Idempotent."""
        with self._lock:
            self._pool.close()
