"""The embedded default store: one SQLite file (WAL), FTS5 for BM25, exact vector search."""

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
from engram.errors import ConfigurationError, NotFoundError, ScopeError, StoreError
from engram.store.base import ScoredId
from engram.store.sqlite.ops import (
    bump,
    delete_rows,
    derived,
    get_record,
    has_text_row,
    index_text,
    insert_records,
    where_sql,
    write_history,
)
from engram.store.sqlite.rows import (
    RECORD_COLUMNS,
    REF_COLUMNS,
    history_from_row,
    record_from_row,
    ref_from_row,
)
from engram.store.sqlite.schema import migrate
from engram.store.sqlite.usercache import UserCache
from engram.store.sqlite.vectors import UserMatrix, load_user_matrix
from engram.store.text import query_terms
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

_Row = TypeVar("_Row")


class SqliteStore:
    """A :class:`~engram.store.base.Store` in one SQLite file (or ``":memory:"``).

    Vector search is exact: each user's vectors are held as one NumPy matrix, loaded on first
    search and kept for the ``cached_users`` most recently searched users.
    """

    def __init__(self, path: str | Path = ":memory:", *, cached_users: int = 64) -> None:
        self.path = str(path)
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._matrices: UserCache[UserMatrix] = UserCache(cached_users)
        self._speakers: UserCache[frozenset[str]] = UserCache(cached_users)
        self._dim: int | None = None
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA secure_delete = ON")  # hard delete leaves no readable bytes
        self._conn.execute("PRAGMA foreign_keys = ON")
        migrate(self._conn)
        dim = self._meta("dim")
        self._dim = int(dim) if dim is not None else None

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"storage failed, nothing was written: {exc}") from exc
                raise

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
        with self._tx() as conn:
            stored_name, stored_dim = self._meta("embedder"), self._meta("dim")
            if stored_dim is not None and int(stored_dim) != dim:
                raise ConfigurationError(
                    f"{self.path} holds {stored_dim}-dimensional vectors from {stored_name!r}; "
                    f"embedder {name!r} makes {dim}-dimensional ones"
                )
            if stored_name is not None and stored_name != name:
                has_rows = conn.execute("SELECT 1 FROM vectors LIMIT 1").fetchone()
                if has_rows:
                    raise ConfigurationError(
                        f"{self.path} was indexed with embedder {stored_name!r}, not {name!r}"
                    )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (name,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
        self._dim = dim

    def _check(self, records: Sequence[MemoryRecord], vectors: Vectors) -> None:
        if len(records) != len(vectors):
            raise StoreError(f"{len(records)} records but {len(vectors)} vectors")
        if self._dim is not None and len(records) and vectors.shape[1] != self._dim:
            raise ConfigurationError(f"vectors have dimension {vectors.shape[1]}, not {self._dim}")

    def add(self, records: Sequence[MemoryRecord], vectors: Vectors) -> builtins.list[MemoryRecord]:
        self._check(records, vectors)
        with self._lock:
            with self._tx() as conn:
                inserted = insert_records(conn, records, vectors)
                users = dict.fromkeys(r.user_id for r, _ in inserted)
                generations = {user: bump(conn, user) for user in users}  # once per user
            for user_id, gen in generations.items():
                self._carry_caches(
                    user_id, gen, [(r, i) for r, i in inserted if r.user_id == user_id], vectors
                )
        return [record for record, _ in inserted]

    def _carry_caches(
        self, user_id: str, gen: int, mine: list[tuple[MemoryRecord, int]], vectors: Vectors
    ) -> None:
        """Carry the user's cached matrix and speakers over this process's insert of ``mine``."""
        rows = [(r.id, r.kind.value, r.session_id, r.agent_id) for r, _ in mine]
        new = vectors[[i for _, i in mine]]
        self._matrices.advance(user_id, gen, lambda m: m.append(rows, new))
        names = {r.name for r, _ in mine if r.kind is RecordKind.TURN and r.name is not None}
        self._speakers.advance(user_id, gen, lambda known: known | names)

    def update(
        self,
        user_id: str,
        texts: Sequence[tuple[str, str]],
        vectors: Vectors,
        *,
        drop: Sequence[str] = (),
        add: Sequence[MemoryRecord] = (),
        add_vectors: Vectors | None = None,
    ) -> builtins.list[MemoryRecord]:
        if len(texts) != len(vectors):
            raise StoreError(f"{len(texts)} updates but {len(vectors)} vectors")
        fresh = np.zeros((0, self._dim or 0), np.float32) if add_vectors is None else add_vectors
        self._check(add, fresh)
        if any(r.user_id != user_id for r in add):
            raise ScopeError("update can only add records of the user it acts for")
        updated = []
        with self._tx() as conn:
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
                conn.execute("DELETE FROM records_fts WHERE rowid = ?", (rowid,))
                index_text(conn, [(rowid, new)])
                write_history(conn, [(new, "UPDATE", old.text, text)])
                updated.append(new)
            dropped = [get_record(conn, user_id, record_id) for record_id in drop]
            write_history(conn, [(gone, "DELETE", gone.text, None) for gone in dropped])
            if drop:  # sentence keys have no full-text row: no index merge for them
                delete_rows(conn, user_id, drop, merge_fts=any(map(has_text_row, dropped)))
            insert_records(conn, add, fresh)
            bump(conn, user_id)
        self._matrices.drop(user_id)
        return updated

    def delete(self, user_id: str, record_id: str) -> builtins.list[str]:
        with self._tx() as conn:
            record = get_record(conn, user_id, record_id)
            keys = [r for r in derived(conn, user_id, record_id) if r.kind in DERIVED_KEY_KINDS]
            write_history(conn, [(gone, "DELETE", gone.text, None) for gone in (record, *keys)])
            doomed = [record_id, *(r.id for r in keys)]
            delete_rows(conn, user_id, doomed)
            bump(conn, user_id)
        self._matrices.drop(user_id)
        return doomed

    def forget(self, user_id: str, *, session_id: str | None = None) -> int:
        where, params = where_sql(RecordFilter(user_id=user_id, session_id=session_id))
        with self._tx() as conn:
            ids = [row[0] for row in conn.execute(f"SELECT id FROM records WHERE {where}", params)]
            delete_rows(conn, user_id, ids)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                conn.execute(
                    f"DELETE FROM history WHERE user_id = ? AND record_id IN "
                    f"({', '.join('?' * len(chunk))})",
                    [user_id, *chunk],
                )
            if session_id is None:
                conn.execute("DELETE FROM history WHERE user_id = ?", (user_id,))
            bump(conn, user_id)
        self._matrices.drop(user_id)
        return len(ids)

    # -- reads ----------------------------------------------------------------------------------

    def get_many(self, user_id: str, ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        return self._by_id(user_id, ids, RECORD_COLUMNS, record_from_row)

    def get_refs(self, user_id: str, ids: Sequence[str]) -> builtins.list[KeyRef]:
        return self._by_id(user_id, ids, REF_COLUMNS, ref_from_row)

    def _by_id(
        self, user_id: str, ids: Sequence[str], columns: str, convert: Callable[[Any], _Row]
    ) -> builtins.list[_Row]:
        found: dict[str, _Row] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk: builtins.list[str] = builtins.list(ids[start : start + 500])
                rows = self._conn.execute(
                    # "+user_id": look rows up by the unique id index, then check the owner
                    # (with the user_id index SQLite would scan all of a user's records)
                    f"SELECT {columns} FROM records WHERE +user_id = ? "
                    f"AND id IN ({', '.join('?' * len(chunk))})",
                    [user_id, *chunk],
                )
                found.update((row[0], convert(row)) for row in rows)
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
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE user_id = ? AND session_id = ? "
                "AND kind = 'turn' ORDER BY seq DESC LIMIT ?",
                (user_id, session_id, n),
            ).fetchall()
        return [record_from_row(row) for row in reversed(rows)]

    def derived_from(self, user_id: str, record_id: str) -> builtins.list[MemoryRecord]:
        with self._lock:
            return derived(self._conn, user_id, record_id)

    def list(
        self, where: RecordFilter, *, limit: int, offset: int = 0
    ) -> builtins.list[MemoryRecord]:
        clause, params = where_sql(where)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE {clause} "
                "ORDER BY session_id, seq, kind DESC, rowid LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [record_from_row(row) for row in rows]

    def history(self, user_id: str, record_id: str) -> builtins.list[HistoryEvent]:
        with self._lock:
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
        terms = query_terms(query)
        if not terms or limit <= 0:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        clause, params = where_sql(where, "r")
        with self._lock:
            rows = self._conn.execute(
                "SELECT r.id, bm25(records_fts) AS s FROM records_fts "
                "JOIN records r ON r.rowid = records_fts.rowid "
                f"WHERE records_fts MATCH ? AND {clause} ORDER BY s LIMIT ?",
                [match, *params, limit],
            ).fetchall()
        return [(rid, -float(score)) for rid, score in rows]

    def speakers(self, user_id: str) -> frozenset[str]:
        with self._lock:
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
        with self._lock:  # a write by another thread extends the matrix in place: not meanwhile
            m = self._matrices.get(
                user_id, self._generation(user_id), lambda: self._load_matrix(user_id)
            )
            return m.search(self._conn, vector, where, limit)

    def stats(self, user_id: str | None = None) -> StoreStats:
        cond, params = ("WHERE user_id = ?", [user_id]) if user_id else ("", [])
        with self._lock:
            kinds = dict(
                self._conn.execute(
                    f"SELECT kind, COUNT(*) FROM records {cond} GROUP BY kind", params
                )
            )
            users, sessions = self._conn.execute(
                f"SELECT COUNT(DISTINCT user_id), COUNT(DISTINCT user_id || '/' || "
                f"COALESCE(session_id, '')) FROM records {cond}",
                params,
            ).fetchone()
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return StoreStats(
            records=kinds, users=users, sessions=sessions, size_bytes=pages * page_size,
            embedder=self._meta("embedder"), dim=self._dim,
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._matrices.clear()
            self._conn.close()
