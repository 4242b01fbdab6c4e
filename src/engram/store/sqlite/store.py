"""The embedded default store: one SQLite file (WAL), a per-user BM25 index, exact vector search."""

from __future__ import annotations

import builtins
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from engram.embed.base import Vectors
from engram.errors import (
    ConfigurationError,
    NotFoundError,
    ScopeError,
    StoreError,
)
from engram.store.base import FactChange, Job, ScoredId, SessionTail, Sources
from engram.store.lexical import query_stems
from engram.store.sqlite import facts, lexical
from engram.store.sqlite.connect import (
    in_memory,
    open_database,
    open_reader,
    read_transaction,
    store_error,
    translate_errors,
)
from engram.store.sqlite.follow import behind_others, follow_matrix
from engram.store.sqlite.ops import (
    bump,
    check_embedder,
    check_sources,
    check_tail,
    delete_rows,
    derived,
    forget_session,
    forget_user,
    generation,
    get_record,
    insert_records,
    store_stats,
    update_texts,
    write_history,
)
from engram.store.sqlite.readers import ReadConnections
from engram.store.sqlite.reembed import check_bound, replace_all
from engram.store.sqlite.refs import USERS, RefMemos
from engram.store.sqlite.rows import (
    AFTER_SQL,
    HISTORY_COLUMNS,
    RECORD_COLUMNS,
    after_params,
    history_from_row,
    owned_rows,
    record_from_row,
    where_sql,
)
from engram.store.sqlite.usercache import UserCache
from engram.store.sqlite.users import list_users
from engram.store.sqlite.vectors import UserMatrix, load_user_matrix, rows_of
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

__all__ = ["SqliteStore"]

# What a hard delete of a record takes with it: the index keys built from it, and the derived
# memories (facts, summaries) that cite it, whose text may repeat what it said.
_DELETED_WITH_SOURCE = (*DERIVED_KEY_KINDS, RecordKind.FACT, RecordKind.SUMMARY)


_Row = TypeVar("_Row")


class SqliteStore:
    """A :class:`~engram.store.base.Store` in one SQLite file (or ``":memory:"``).

    Vector search is exact: each user's vectors are held as one NumPy matrix, loaded on first
    search and kept for the ``cached_users`` most recently searched users.

    Another program's database, a damaged file or one that is not SQLite raises StoreError and
    is left untouched (:mod:`~engram.store.sqlite.connect`). ``timeout``: seconds to wait for
    another process that holds the file. ``read_only``: None opens a file that is not writable
    read-only (reads work, writes raise StoreError); True or False forces the mode.

    Thread-safe. Writes take the store's lock and run one at a time on one connection; reads
    of a file take no lock and run at once, each on a read connection of its own (see
    :mod:`~engram.store.sqlite.readers` and docs/reliability.md, "Concurrent reads").
    ``":memory:"`` is one connection's database: its reads and writes share it, under the lock.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        cached_users: int = 64,
        timeout: float = 30.0,
        read_only: bool | None = None,
    ) -> None:
        self.path = str(path)
        self._timeout = timeout
        self._lock = threading.RLock()
        self._matrices: UserCache[UserMatrix] = UserCache(cached_users)
        self._speakers: UserCache[frozenset[str]] = UserCache(cached_users)
        self._refs = RefMemos(min(cached_users, USERS))
        self._dim: int | None = None
        self._embedder: str | None = None  # bound: checked by each write of vectors
        self._unscrubbed = False  # a delete's log truncation is still to do
        self._conn, self.read_only = open_database(
            self.path, timeout=self._timeout, read_only=read_only
        )
        self._readers: ReadConnections | None = None  # ":memory:": the one connection
        if not in_memory(self.path):
            ro, limit = self.read_only, self._timeout
            self._readers = ReadConnections(
                lambda: open_reader(self.path, timeout=limit, read_only=ro)
            )
        try:
            with translate_errors(self.path, timeout=self._timeout):
                row = self._conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        except BaseException:
            self._conn.close()
            raise
        self._dim = int(row[0]) if row is not None else None

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, vectors: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; one that writes ``vectors`` first checks that the store is still
        bound to this object's embedder (erasure never waits for that)."""
        if self.read_only:
            raise StoreError(f"{self.path} is read-only; nothing was written")
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                if vectors and self._embedder is not None:
                    check_bound(self._conn, self.path, self._embedder)
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise store_error(
                        self.path, exc, timeout=self._timeout, doing="nothing was written: "
                    ) from exc
                raise
            if self._unscrubbed:  # committed: a truncation left over from a delete
                self._scrub()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection in one read transaction (one snapshot for all that is read inside),
        ended on exit; SQLite's errors become :class:`StoreError`. A file: a read connection,
        without the store lock, so that no read waits for a write or another read.
        ``":memory:"``: the one connection, under the lock."""
        with translate_errors(self.path, timeout=self._timeout):
            if self._readers is None:
                with self._lock, read_transaction(self._conn) as conn:
                    yield conn
            else:
                with self._readers.snapshot() as conn:
                    yield conn

    # -- writes ---------------------------------------------------------------------------------

    def bind_embedder(self, name: str, dim: int) -> None:
        """Record the embedder, or check it against the recorded one. Writes only when the
        record changes, so a read-only store accepts the embedder it was built with."""
        with self._reading() as conn:
            recorded = check_embedder(conn, self.path, name, dim)
        if not recorded and not self.read_only:  # a read-only store has no vectors to mix up
            with self._tx() as conn:
                if not check_embedder(conn, self.path, name, dim):  # again, under the lock
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (name,))
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
        self._dim, self._embedder = dim, name

    def replace_vectors(
        self, name: str, dim: int, ids: Sequence[str], vectors: Vectors, digests: Sequence[int]
    ) -> builtins.list[tuple[str, str]]:
        with self._lock:
            with self._tx() as conn:
                missing = replace_all(conn, name, dim, ids, vectors, digests)
            if not missing:
                self._dim, self._embedder = dim, name
        return missing

    def _check(self, records: Sequence[MemoryRecord], vectors: Vectors) -> None:
        if len(records) != len(vectors):
            raise StoreError(f"{len(records)} records but {len(vectors)} vectors")
        if self._dim is not None and len(records) and vectors.shape[1] != self._dim:
            raise ConfigurationError(f"vectors have dimension {vectors.shape[1]}, not {self._dim}")

    def add(
        self,
        records: Sequence[MemoryRecord],
        vectors: Vectors,
        *,
        expect: SessionTail | None = None,
        jobs: Sequence[Job] = (),
    ) -> builtins.list[MemoryRecord]:
        self._check(records, vectors)
        with self._lock:
            with self._tx(vectors=True) as conn:
                if expect is not None:
                    check_tail(conn, expect, [r.id for r in records])
                behind = [
                    behind_others(conn, u, self._matrices, self._refs, self._dim or 0)
                    for u in dict.fromkeys(r.user_id for r in records)
                ]
                inserted = insert_records(conn, records, vectors)
                facts.enqueue(conn, jobs)
                users = dict.fromkeys(r.user_id for r, _ in inserted)
                # once per user
                generations = {user: bump(conn, user, insert_only=True) for user in users}
            for catch_up in behind:
                catch_up()
            for user_id, step in generations.items():
                self._carry_caches(
                    user_id, step, [(r, i) for r, i in inserted if r.user_id == user_id], vectors
                )
        return [record for record, _ in inserted]

    def _carry_caches(
        self,
        user_id: str,
        step: tuple[int, int],
        mine: list[tuple[MemoryRecord, int]],
        vectors: Vectors,
    ) -> None:
        """Carry the user's cached matrix and speakers over this process's insert of ``mine``."""
        rows, new = rows_of(mine, vectors)
        self._matrices.advance(user_id, step, lambda m: m.append(rows, new))
        names = {r.name for r, _ in mine if r.kind is RecordKind.TURN and r.name is not None}
        self._speakers.advance(user_id, step, lambda known: known | names)
        self._refs.advance(user_id, step)  # an insert changes no stored ref

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
        with self._lock:  # caches follow the writes in commit order
            with self._tx(vectors=True) as conn:
                if expect is not None and texts:
                    check_sources(conn, user_id, texts[0][0], expect)
                updated, changed = update_texts(conn, user_id, texts, vectors)
                dropped = [get_record(conn, user_id, record_id) for record_id in drop]
                gone = delete_rows(conn, user_id, drop)
                write_history(conn, [(r, "DELETE", None, None) for r in dropped])
                inserted = insert_records(conn, add, fresh)
                step = bump(conn, user_id, insert_only=False)
            rows, added = rows_of(inserted, fresh)
            self._matrices.advance(
                user_id, step,
                lambda m: m.replace(changed, vectors).remove(gone, drop).append(rows, added),
            )  # fmt: skip
            self._speakers.advance(user_id, step, lambda known: known)  # names are unchanged
            self._refs.drop(user_id)
        return updated

    def delete(self, user_id: str, record_id: str) -> builtins.list[str]:
        with self._lock:  # caches follow the writes in commit order
            with self._tx() as conn:
                record = get_record(conn, user_id, record_id)
                keys = [
                    r for r in derived(conn, user_id, record_id) if r.kind in _DELETED_WITH_SOURCE
                ]
                doomed = [record_id, *(r.id for r in keys)]
                rowids = delete_rows(conn, user_id, doomed)
                write_history(conn, [(gone, "DELETE", None, None) for gone in (record, *keys)])
                step = bump(conn, user_id, insert_only=False)
            self._matrices.advance(user_id, step, lambda m: m.remove(rowids, doomed))
            self._refs.drop(user_id)
        self._scrub()
        return doomed

    def forget(self, user_id: str, *, session_id: str | None = None) -> int:
        with self._lock:  # caches follow the writes in commit order
            if session_id is None:  # nothing may name the user any more
                with self._tx() as conn:
                    count = forget_user(conn, user_id)
                    facts.forget_jobs(conn, user_id, None)
                self._matrices.drop(user_id)
            else:
                with self._tx() as conn:
                    ids, rowids = forget_session(conn, user_id, session_id)
                    facts.forget_jobs(conn, user_id, session_id)
                    step = bump(conn, user_id, insert_only=False)
                count = len(ids)
                self._matrices.advance(user_id, step, lambda m: m.remove(rowids, ids))
            self._speakers.drop(user_id)
            self._refs.drop(user_id)
        self._scrub()
        return count

    def _scrub(self) -> None:
        """Truncate the write-ahead log, so that the pages a delete changed (the old versions
        hold the deleted text) are gone from it too; ``secure_delete`` has zeroed them in the
        database. If a reader keeps the log busy, try again after the next write."""
        if in_memory(self.path) or self.read_only:
            return
        with self._lock:  # (the writer's connection; a reader's transaction makes it wait)
            try:
                with translate_errors(self.path, timeout=self._timeout):
                    busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except StoreError:  # the delete has committed: do not fail it, truncate later
                busy = 1
            self._unscrubbed = bool(busy)

    # -- reads ----------------------------------------------------------------------------------

    def get_many(self, user_id: str, ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        return self._by_id(user_id, ids, RECORD_COLUMNS, record_from_row)

    def get_refs(self, user_id: str, ids: Sequence[str]) -> builtins.list[KeyRef]:
        with self._reading() as conn:  # remembered per user: see refs.py
            return self._refs.get_refs(conn, user_id, ids)

    def _by_id(
        self, user_id: str, ids: Sequence[str], columns: str, convert: Callable[[Any], _Row]
    ) -> builtins.list[_Row]:
        with self._reading() as conn:
            rows = owned_rows(conn, user_id, columns, "id", ids)
        found = {row[0]: convert(row) for row in rows}
        return [found[i] for i in ids if i in found]

    def get_vectors(self, user_id: str, ids: Sequence[str]) -> Vectors:
        columns = "id, (SELECT vector FROM vectors v WHERE v.rowid = records.rowid)"
        found = dict(self._by_id(user_id, ids, columns, lambda row: (str(row[0]), row[1])))
        missing = [i for i in ids if found.get(i) is None]  # not the user's, or no vector
        if missing:
            raise NotFoundError(f"no record {missing[0]!r} for this user")
        rows = [np.frombuffer(found[i], dtype=np.float32) for i in ids]
        return np.vstack(rows) if rows else np.zeros((0, self._dim or 0), dtype=np.float32)

    def last_turns(self, user_id: str, session_id: str, n: int) -> builtins.list[MemoryRecord]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE user_id = ? AND session_id = ? "
                "AND kind = 'turn' ORDER BY seq DESC, rowid DESC LIMIT ?",
                (user_id, session_id, n),
            ).fetchall()
        return [record_from_row(row) for row in reversed(rows)]

    def derived_from(self, user_id: str, record_id: str) -> builtins.list[MemoryRecord]:
        with self._reading() as conn:
            return derived(conn, user_id, record_id)

    def list(
        self,
        where: RecordFilter,
        *,
        limit: int,
        offset: int = 0,
        after: MemoryRecord | None = None,
    ) -> builtins.list[MemoryRecord]:
        clause, params = where_sql(where)
        if after is not None:
            clause += f" AND {AFTER_SQL}"
            params = [*params, *after_params(where.user_id, after)]
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE {clause} "
                "ORDER BY session_id, seq, kind DESC, rowid LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [record_from_row(row) for row in rows]

    def history(self, user_id: str, record_id: str) -> builtins.list[HistoryEvent]:
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {HISTORY_COLUMNS} FROM history "
                "WHERE user_id = ? AND record_id = ? ORDER BY id",
                (user_id, record_id),
            ).fetchall()
        if not rows:
            raise NotFoundError(f"no record {record_id!r} for this user")
        return [history_from_row(row) for row in rows]

    def users(
        self, *, prefix: str = "", limit: int, after: str | None = None
    ) -> builtins.list[str]:
        with self._reading() as conn:
            return list_users(conn, prefix, limit, after)

    def lexical_search(
        self, query: str, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        stems = query_stems(query)
        if not stems or limit <= 0:
            return []
        with self._reading() as conn:
            memo = self._refs.memo(conn, where.user_id)
            return lexical.search_ids(conn, where, stems, limit, memo)

    def speakers(self, user_id: str) -> frozenset[str]:
        with self._reading() as conn:
            return self._speakers.get(user_id, generation(conn, user_id).gen, lambda: frozenset(
                str(row[0]) for row in conn.execute(
                    "SELECT DISTINCT name FROM records "
                    "WHERE user_id = ? AND kind = 'turn' AND name IS NOT NULL",
                    (user_id,),
                )
            ))  # fmt: skip

    def vector_search(
        self, vector: Vectors, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        # Why the generation and the matrix are read in ONE read transaction: a cached matrix
        # is tagged with the generation it holds, and a writer of this process appends its
        # rows to the matrix tagged with the generation its write started from (advance).
        # Read apart, the generation could be read before a concurrent commit and the matrix
        # after it: the matrix would hold that commit's rows under the older tag, and the
        # writer's advance would append them a second time. In one snapshot the two agree,
        # because a write moves the generation on in the same transaction as its rows. Which
        # of a racing build and a writer's advance reaches the cache first does not matter:
        # a matrix built at generation g is carried over exactly the writes that start from
        # g (those that committed after the snapshot; UserCache.get logs them during the
        # build), and writers advance in commit order, under the store lock.
        user_id = where.user_id
        dim = self._dim or 0
        with self._reading() as conn:
            now = generation(conn, user_id)
            m = self._matrices.get(
                user_id, now.gen, lambda: self._load_matrix(conn, user_id, dim),
                follow_matrix(conn, now, dim),  # another process only inserted since: its rows
            )  # fmt: skip
            return m.search(conn, vector, where, limit)  # its lock: not during SQL

    def _load_matrix(self, conn: sqlite3.Connection, user_id: str, dim: int) -> UserMatrix:
        if self._embedder is not None:  # not re-indexed by another process since bound
            check_bound(conn, self.path, self._embedder)
        return load_user_matrix(conn, user_id, dim)

    def stats(self, user_id: str | None = None) -> StoreStats:
        with self._reading() as conn:
            return store_stats(conn, user_id, self._dim)

    # -- the LLM layer --------------------------------------------------------------------------

    def consolidate(self, change: FactChange, vectors: Vectors) -> builtins.list[MemoryRecord]:
        user_id, added = change.user_id, len(change.add)
        if len(vectors) != added + len(change.rewrite):
            raise StoreError(f"{added + len(change.rewrite)} facts but {len(vectors)} vectors")
        self._check(change.add, vectors[:added])
        with self._lock:  # caches follow the writes in commit order
            with self._tx(vectors=True) as conn:
                inserted, rewritten, changed = facts.apply_change(conn, change, vectors)
                step = bump(conn, user_id, insert_only=False)
            rows, new = rows_of(inserted, vectors[:added])
            self._matrices.advance(
                user_id, step, lambda m: m.replace(changed, vectors[added:]).append(rows, new)
            )
            self._speakers.advance(user_id, step, lambda known: known)  # facts have no speaker
            self._refs.drop(user_id)  # facts retired or rewritten
        return [record for record, _ in inserted] + rewritten

    def claim_jobs(
        self, *, now: datetime, lease_seconds: float, limit: int, user_id: str | None = None
    ) -> builtins.list[Job]:
        with self._tx() as conn:
            return facts.claim(conn, now, lease_seconds, limit, user_id)

    def release_job(self, job_id: int, *, error: str, retry_at: datetime) -> None:
        with self._tx() as conn:
            facts.release(conn, job_id, error, retry_at)

    def record_usage(self, user_id: str, purpose: str, usage: Usage) -> None:
        with self._tx() as conn:
            facts.add_usage(conn, user_id, purpose, usage)

    def close(self) -> None:
        """Close every connection (a read still running closes its own when it ends)."""
        if self._readers is not None:
            self._readers.close()
        with self._lock:  # (a write in progress ends first)
            self._matrices.clear()
            self._speakers.clear()
            self._refs.clear()
            self._conn.close()
