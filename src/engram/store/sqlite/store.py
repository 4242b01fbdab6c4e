"""The embedded default store: one SQLite file (WAL), a per-user BM25 index, exact vector search."""

from __future__ import annotations

import builtins
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from engram.store.base import ScoredId, SessionTail, Sources
from engram.store.lexical import query_stems
from engram.store.sqlite import lexical
from engram.store.sqlite.connect import open_database, store_error, translate_errors
from engram.store.sqlite.ops import (
    bump,
    check_embedder,
    check_sources,
    check_tail,
    delete_rows,
    derived,
    forget_user,
    get_record,
    insert_records,
    store_stats,
    write_history,
)
from engram.store.sqlite.rows import (
    RECORD_COLUMNS,
    REF_COLUMNS,
    history_from_row,
    owned_rows,
    record_from_row,
    ref_from_row,
    where_sql,
)
from engram.store.sqlite.usercache import UserCache
from engram.store.sqlite.vectors import UserMatrix, load_user_matrix, rows_of
from engram.types import (
    DERIVED_KEY_KINDS,
    HistoryEvent,
    KeyRef,
    MemoryRecord,
    RecordFilter,
    RecordKind,
    StoreStats,
)

__all__ = ["SqliteStore"]

# Keyset pagination in the order of list(): (session_id, seq) ascending, kind descending, rowid.
# NULLs sort first, as '' and -1 do (ids are non-empty, seq >= 0). A record that has been deleted
# has no rowid any more: the records that tie with it on (session, seq, kind) are then skipped
# rather than repeated (for turns there are none; seq is unique in a session).
_AFTER = (
    "(COALESCE(session_id, '') > ? OR (COALESCE(session_id, '') = ? AND (COALESCE(seq, -1) > ? "
    "OR (COALESCE(seq, -1) = ? AND (kind < ? OR (kind = ? AND rowid > COALESCE("
    "(SELECT rowid FROM records WHERE id = ? AND user_id = ?), 9223372036854775807)))))))"
)


def _after_params(user_id: str, after: MemoryRecord) -> list[object]:
    session, seq = after.session_id or "", -1 if after.seq is None else after.seq
    kind = after.kind.value
    return [session, session, seq, seq, kind, kind, after.id, user_id]


_Row = TypeVar("_Row")


class SqliteStore:
    """A :class:`~engram.store.base.Store` in one SQLite file (or ``":memory:"``).

    Vector search is exact: each user's vectors are held as one NumPy matrix, loaded on first
    search and kept for the ``cached_users`` most recently searched users.

    Another program's database, a damaged file or one that is not SQLite raises StoreError and
    is left untouched (:mod:`~engram.store.sqlite.connect`). ``timeout``: seconds to wait for
    another process that holds the file. ``read_only``: None opens a file that is not writable
    read-only (reads work, writes raise StoreError); True or False forces the mode.
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
        self._dim: int | None = None
        self._unscrubbed = False  # a delete's log truncation is still to do
        self._conn, self.read_only = open_database(
            self.path, timeout=self._timeout, read_only=read_only
        )
        try:
            with self._reading():
                dim = self._meta("dim")
        except BaseException:
            self._conn.close()
            raise
        self._dim = int(dim) if dim is not None else None

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise StoreError(f"{self.path} is read-only; nothing was written")
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
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
        """The connection, under the store lock; SQLite's errors become :class:`StoreError`."""
        with self._lock, translate_errors(self.path, timeout=self._timeout):
            yield self._conn

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _generation(self, user_id: str) -> int:
        row = self._conn.execute(
            "SELECT gen FROM generations WHERE user_id = ?", (user_id,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    # -- writes ---------------------------------------------------------------------------------

    def bind_embedder(self, name: str, dim: int) -> None:
        """Record the embedder, or check it against the recorded one. Writes only when the
        record changes, so a read-only store accepts the embedder it was built with."""
        with self._reading():
            recorded = check_embedder(self._conn, self.path, name, dim)
        if not recorded and not self.read_only:  # a read-only store has no vectors to mix up
            with self._tx() as conn:
                if not check_embedder(conn, self.path, name, dim):  # again, under the lock
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (name,))
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
        self._dim = dim

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
    ) -> builtins.list[MemoryRecord]:
        self._check(records, vectors)
        with self._lock:
            with self._tx() as conn:
                if expect is not None:
                    check_tail(conn, expect, [r.id for r in records])
                inserted = insert_records(conn, records, vectors)
                users = dict.fromkeys(r.user_id for r, _ in inserted)
                generations = {user: bump(conn, user) for user in users}  # once per user
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
        updated, changed = [], []
        with self._lock:  # the cached matrix follows this write before anyone searches it
            with self._tx() as conn:
                if expect is not None and texts:
                    check_sources(conn, user_id, texts[0][0], expect)
                for (record_id, text), vector in zip(texts, vectors, strict=True):
                    old = get_record(conn, user_id, record_id)
                    conn.execute("UPDATE records SET text = ? WHERE id = ?", (text, record_id))
                    new = get_record(conn, user_id, record_id)
                    (rowid,) = conn.execute(
                        "SELECT rowid FROM records WHERE id = ?", (record_id,)
                    ).fetchone()
                    conn.execute(
                        "UPDATE vectors SET vector = ? WHERE rowid = ?",
                        (vector.astype(np.float32).tobytes(), rowid),
                    )
                    lexical.unindex_docs(conn, [rowid])
                    lexical.index_docs(conn, [(rowid, new)])
                    write_history(conn, [(new, "UPDATE", old.text, text)])
                    updated.append(new)
                    changed.append((int(rowid), record_id))
                dropped = [get_record(conn, user_id, record_id) for record_id in drop]
                gone = delete_rows(conn, user_id, drop)
                write_history(conn, [(r, "DELETE", None, None) for r in dropped])
                inserted = insert_records(conn, add, fresh)
                step = bump(conn, user_id)
            rows, added = rows_of(inserted, fresh)
            self._matrices.advance(
                user_id, step,
                lambda m: m.replace(changed, vectors).remove(gone, drop).append(rows, added),
            )  # fmt: skip
            self._speakers.advance(user_id, step, lambda known: known)  # names are unchanged
        return updated

    def delete(self, user_id: str, record_id: str) -> builtins.list[str]:
        with self._lock:  # the cached matrix follows this write before anyone searches it
            with self._tx() as conn:
                record = get_record(conn, user_id, record_id)
                keys = [r for r in derived(conn, user_id, record_id) if r.kind in DERIVED_KEY_KINDS]
                doomed = [record_id, *(r.id for r in keys)]
                rowids = delete_rows(conn, user_id, doomed)
                write_history(conn, [(gone, "DELETE", None, None) for gone in (record, *keys)])
                step = bump(conn, user_id)
            self._matrices.advance(user_id, step, lambda m: m.remove(rowids, doomed))
        self._scrub()
        return doomed

    def forget(self, user_id: str, *, session_id: str | None = None) -> int:
        with self._lock:  # the cached matrix follows this write before anyone searches it
            if session_id is None:  # nothing may name the user any more
                with self._tx() as conn:
                    count = forget_user(conn, user_id)
                self._matrices.drop(user_id)
            else:
                where, params = where_sql(RecordFilter(user_id, session_id=session_id))
                with self._tx() as conn:
                    ids = [
                        r[0] for r in conn.execute(f"SELECT id FROM records WHERE {where}", params)
                    ]
                    rowids = delete_rows(conn, user_id, ids)
                    count = len(ids)
                    conn.execute(
                        "DELETE FROM history WHERE user_id = ? AND session_id = ?",
                        (user_id, session_id),
                    )
                    step = bump(conn, user_id)
                self._matrices.advance(user_id, step, lambda m: m.remove(rowids, ids))
            self._speakers.drop(user_id)
        self._scrub()
        return count

    def _scrub(self) -> None:
        """Truncate the write-ahead log, so that the pages a delete changed (the old versions
        hold the deleted text) are gone from it too; ``secure_delete`` has zeroed them in the
        database. If a reader keeps the log busy, try again after the next write."""
        if self.path == ":memory:" or self.read_only:
            return
        try:
            with self._reading():
                busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except StoreError:  # the delete has committed: do not fail it, truncate later
            busy = 1
        self._unscrubbed = bool(busy)

    # -- reads ----------------------------------------------------------------------------------

    def get_many(self, user_id: str, ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        return self._by_id(user_id, ids, RECORD_COLUMNS, record_from_row)

    def get_refs(self, user_id: str, ids: Sequence[str]) -> builtins.list[KeyRef]:
        return self._by_id(user_id, ids, REF_COLUMNS, ref_from_row)

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
        with self._reading():
            rows = self._conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE user_id = ? AND session_id = ? "
                "AND kind = 'turn' ORDER BY seq DESC, rowid DESC LIMIT ?",
                (user_id, session_id, n),
            ).fetchall()
        return [record_from_row(row) for row in reversed(rows)]

    def derived_from(self, user_id: str, record_id: str) -> builtins.list[MemoryRecord]:
        with self._reading():
            return derived(self._conn, user_id, record_id)

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
            clause += f" AND {_AFTER}"
            params = [*params, *_after_params(where.user_id, after)]
        with self._reading():
            rows = self._conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE {clause} "
                "ORDER BY session_id, seq, kind DESC, rowid LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [record_from_row(row) for row in rows]

    def history(self, user_id: str, record_id: str) -> builtins.list[HistoryEvent]:
        with self._reading():
            rows = self._conn.execute(
                "SELECT id, record_id, user_id, event, old_text, new_text, at FROM history "
                "WHERE user_id = ? AND record_id = ? ORDER BY id",
                (user_id, record_id),
            ).fetchall()
        if not rows:
            raise NotFoundError(f"no record {record_id!r} for this user")
        return [history_from_row(row) for row in rows]

    def lexical_search(
        self, query: str, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        stems = query_stems(query)
        if not stems or limit <= 0:
            return []
        with self._reading() as conn:
            return lexical.search_ids(conn, where, stems, limit)

    def speakers(self, user_id: str) -> frozenset[str]:
        with self._reading():
            return self._speakers.get(user_id, self._generation(user_id), lambda: frozenset(
                str(row[0]) for row in self._conn.execute(
                    "SELECT DISTINCT name FROM records "
                    "WHERE user_id = ? AND kind = 'turn' AND name IS NOT NULL",
                    (user_id,),
                )
            ))  # fmt: skip

    def _load_matrix(self, user_id: str) -> UserMatrix:
        return load_user_matrix(self._conn, user_id, self._dim or 0)

    def vector_search(
        self, vector: Vectors, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        user_id = where.user_id
        # a write by another thread extends the matrix in place: not meanwhile
        with self._reading():
            m = self._matrices.get(
                user_id, self._generation(user_id), lambda: self._load_matrix(user_id)
            )
            return m.search(self._conn, vector, where, limit)

    def stats(self, user_id: str | None = None) -> StoreStats:
        with self._reading() as conn:
            return store_stats(conn, user_id, self._dim)

    def close(self) -> None:
        with self._reading():
            self._matrices.clear()
            self._conn.close()
