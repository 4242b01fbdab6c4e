"""Exact vector search over one user's vectors, kept as an in-memory matrix.

SQLite holds the vectors (as float32 blobs, in the same transactions as the records), so the index
can never disagree with the records. Each user's matrix is loaded on first search and kept in a
:class:`~engram.store.sqlite.usercache.UserCache`; rows this process adds are appended in place.
Why exact search rather than an ANN index: see docs/vector-index.md.

Loading reads the ``vectors`` table alone, straight into a preallocated matrix, with each row's
``rowid``; nothing else of a record is read then. The filter columns (kind, session, agent) are
read on the first search that filters on them, as integer codes, from the narrow indexes on
``records``; a hit's record id is looked up by rowid when it is returned. Measured in
docs/perf.md ("Scale: 200k turns for one user").
"""

from __future__ import annotations

import mmap
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from engram.embed.base import Vectors
from engram.errors import StoreError
from engram.store.base import ScoredId
from engram.store.sqlite.rows import owned_rows
from engram.store.sqlite.scoring import FilterCodes, one_blas_thread, top_k
from engram.types import MemoryRecord, RecordFilter

__all__ = ["Row", "RowIds", "UserMatrix", "load_user_matrix", "rows_of", "top_k"]


Row = tuple[str, str, str | None, str | None]  # id, kind, session_id, agent_id
RowIds = npt.NDArray[np.int64]

_FILTERS = {"kind": 1, "session_id": 2, "agent_id": 3}  # a filter column: its place in a Row
_CHUNK = 1024  # vectors read per statement while loading (1.5 MB at 384 dimensions)
_MAPPED = 1 << 24  # buffers from this size up are mapped directly, see _empty
_THREADED = 1 << 24  # matrices from this size up are filled by a second thread while loading


def rows_of(
    inserted: Sequence[tuple[MemoryRecord, int]], vectors: Vectors
) -> tuple[list[Row], Vectors]:
    """The matrix rows of inserted (record, row of ``vectors``) pairs, for UserMatrix.append."""
    rows = [(r.id, r.kind.value, r.session_id, r.agent_id) for r, _ in inserted]
    return rows, vectors[[i for _, i in inserted]]


def _capacity(rows: int) -> int:
    return rows + max(rows // 4, 64)


def _empty(rows: int, dim: int) -> Vectors:
    """An uninitialised matrix. A large one is an anonymous private mapping, not numpy's own
    allocation: numpy advises the kernel to back large arrays with transparent huge pages, and
    where the kernel must first compact memory for them, touching a 1.5 GB matrix for the first
    time took 2-5 s instead of 0.6 s (docs/perf.md). Untouched rows take no memory either way."""
    size = rows * dim * 4
    if size < max(_MAPPED, 1) or not hasattr(mmap, "MAP_PRIVATE"):  # (none on Windows)
        return np.empty((rows, dim), dtype=np.float32)
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    return np.frombuffer(buffer, dtype=np.float32).reshape(rows, dim)


class UserMatrix:
    """One user's vectors, in a buffer that grows by a quarter when full, so appending after
    every write costs amortised O(rows added), not a copy of everything; the spare rows are
    allocated but not touched, so they take no memory until used.

    Rows ``[0, loaded)`` came from the database and are known by their rowid; rows appended
    since by this process are kept whole (id, kind, session, agent). The filter columns are
    read from the database on first use (``conn``); cached kind masks are extended, not
    recomputed.

    Thread-safe. Writers change the matrix in place (append, replace, delete) while searches
    in other threads read it, so both hold its lock: a search sees the rows before a write or
    after it, never half of it. Copy-on-write instead would copy the whole buffer on every
    write (1.5 GB at 1M rows), where an append now costs only its own rows; a lock costs
    searches of the same user running one product at a time (0.3 ms at 5k rows, 10 ms at
    100k), while those of other users run in parallel (the product releases the GIL). SQL
    (a filter column read on first use, the ids of hits) never runs under the lock; what it
    reads is merged under it. ``_rowids`` never changes after the load, so it is read without."""

    def __init__(self, user_id: str, dim: int, rows: int = 0) -> None:
        self.user_id = user_id
        self._lock = threading.Lock()
        self._buffer = _empty(_capacity(rows), dim)
        self._rows = 0
        self._rowids: RowIds = np.empty(rows, dtype=np.int64)
        self._ids: npt.NDArray[np.object_] = np.empty(len(self._buffer), dtype=object)  # None
        self._added: list[Row] = []
        self._columns: dict[str, FilterCodes] = {}
        self._kind_masks: dict[tuple[str, ...], npt.NDArray[np.bool_]] = {}
        self._dead: npt.NDArray[np.bool_] | None = None  # rows of records deleted since
        self._last: tuple[bytes, Vectors] | None = None
        self._seen = -(2**63)  # the highest rowid read from the database (load or catch_up)
        self._added_ids: set[str] = set()

    @property
    def matrix(self) -> Vectors:
        return self._buffer[: self._rows]

    @property
    def loaded(self) -> int:
        """How many rows came from the database (the rest were appended)."""
        return len(self._rowids)

    def _fill(self, rowids: RowIds, vectors: Vectors) -> None:
        """Copy loaded rows in (while loading: before any other thread can see the matrix)."""
        start, end = self._rows, self._rows + len(rowids)
        if end > self.loaded or vectors.shape != (len(rowids), self._buffer.shape[1]):
            raise StoreError(f"the vectors of user {self.user_id!r} changed while loading")
        self._rowids[start:end] = rowids
        self._buffer[start:end] = vectors
        self._rows = end
        if len(rowids):
            self._seen = max(self._seen, int(rowids[-1]))

    def append(self, rows: list[Row], vectors: Vectors) -> UserMatrix:
        """Add rows written by this process; returns the matrix itself."""
        with self._lock:
            self._append(rows, vectors)
        return self

    @property
    def followable(self) -> bool:
        """Whether rows inserted by others can be read by rowid (:meth:`catch_up`): not after
        this process deleted rows, since SQLite may give a new row the rowid of a deleted last
        one, which would then not be above :attr:`seen`."""
        return self._dead is None

    @property
    def seen(self) -> int:
        return self._seen

    def catch_up(self, rowids: RowIds, rows: list[Row], vectors: Vectors) -> UserMatrix:
        """Add the rows that other processes inserted (read by rowid above :attr:`seen`), but
        none that this process appended itself; returns the matrix itself."""
        with self._lock:
            fresh = [i for i, row in enumerate(rows) if row[0] not in self._added_ids]
            self._append([rows[i] for i in fresh], vectors[fresh])
            if len(rowids):
                self._seen = max(self._seen, int(rowids.max()))
        return self

    def _append(self, rows: list[Row], vectors: Vectors) -> None:
        """:meth:`append`, under the lock."""
        start, needed = self._rows, self._rows + len(rows)
        if needed > self._buffer.shape[0] or vectors.shape[1] != self._buffer.shape[1]:
            self._grow(needed, vectors.shape[1])
        self._buffer[start:needed] = vectors
        self._ids[start:needed] = [r[0] for r in rows]
        for name, column in self._columns.items():
            column.codes[start:needed] = [column.code(r[_FILTERS[name]]) for r in rows]
        self._added.extend(rows)
        self._added_ids.update(r[0] for r in rows)
        self._rows = needed
        self._kind_masks = {
            kinds: np.concatenate([keep, np.array([r[1] in kinds for r in rows], bool)])
            for kinds, keep in self._kind_masks.items()
        }
        self._last = None

    def _grow(self, needed: int, dim: int) -> None:
        start = self._rows
        if start and dim != self._buffer.shape[1]:
            raise ValueError("vectors of another dimension")
        grown = _empty(_capacity(needed), dim)
        if start:  # (an empty matrix may have had no dimension yet)
            grown[:start] = self.matrix
        self._buffer = grown
        self._ids = np.concatenate([self._ids[:start], np.empty(len(grown) - start, object)])
        for column in self._columns.values():
            column.resize(start, grown.shape[0])
        if self._dead is not None:
            self._dead = np.concatenate([self._dead[:start], np.zeros(len(grown) - start, bool)])

    def _positions(self, rowids: Sequence[int], ids: Iterable[str]) -> npt.NDArray[np.int64]:
        """The rows of records known by rowid (loaded rows) or by id (rows appended since)."""
        wanted = np.array(rowids, dtype=np.int64)
        found: list[int] = []
        if self.loaded and len(wanted):
            at = np.minimum(np.searchsorted(self._rowids, wanted), self.loaded - 1)
            found.extend(int(row) for row in at[self._rowids[at] == wanted])
        names = set(ids)
        found.extend(self.loaded + i for i, row in enumerate(self._added) if row[0] in names)
        return np.array(found, dtype=np.int64)

    def remove(self, rowids: Sequence[int], ids: Iterable[str]) -> UserMatrix:
        """Carry the matrix over this process's delete of records (by rowid, and by id for the
        rows appended since the load): their rows are never returned again. The rows stay in
        the buffer until the next load; a delete does not cost a reload of every vector."""
        with self._lock:
            if self._dead is None:
                self._dead = np.zeros(len(self._buffer), dtype=bool)
            self._dead[self._positions(rowids, ids)] = True
            self._last = None
        return self

    def replace(self, changed: Sequence[tuple[int, str]], vectors: Vectors) -> UserMatrix:
        """Carry the matrix over this process's update of records' vectors: ``changed`` holds
        each record's (rowid, id), row ``i`` of ``vectors`` its new vector."""
        with self._lock:
            for (rowid, record_id), vector in zip(changed, vectors, strict=True):
                self._buffer[self._positions([rowid], [record_id])] = vector
            self._last = None
        return self

    def _read_column(self, conn: sqlite3.Connection, name: str) -> None:
        """Read a filter column on first use: the rowids of each distinct value, from the
        ``records_kind`` or ``records_scope`` index (agents: the table), none per row in
        Python; appended rows bring their own values. The reading and the coding of the loaded
        rows run outside the lock; the appended rows are added under it."""
        if name in self._columns:
            return
        column = FilterCodes(self.loaded)
        known = self._rowids
        if self.loaded:
            for value, text in conn.execute(
                f"SELECT {name}, group_concat(rowid) FROM records WHERE user_id = ? "
                f"GROUP BY {name}",
                (self.user_id,),
            ):
                found = np.fromstring(text, dtype=np.int64, sep=",")
                at = np.minimum(np.searchsorted(known, found), self.loaded - 1)
                column.codes[at[known[at] == found]] = column.code(value)
        place = _FILTERS[name]
        with self._lock:
            if name in self._columns:  # another search read it meanwhile
                return
            column.resize(self.loaded, self._buffer.shape[0])
            for offset, row in enumerate(self._added):
                column.codes[self.loaded + offset] = column.code(row[place])
            self._columns[name] = column

    def mask(
        self,
        conn: sqlite3.Connection,
        kinds: tuple[str, ...],
        session_id: str | None,
        agent_id: str | None,
    ) -> npt.NDArray[np.bool_] | None:
        """Rows passing the filter, or None when every row passes."""
        self._read_columns(conn, kinds, session_id, agent_id)
        with self._lock:
            return self._mask(kinds, session_id, agent_id)

    def _read_columns(
        self, conn: sqlite3.Connection, kinds: tuple[str, ...], session: str | None,
        agent: str | None,
    ) -> None:  # fmt: skip
        """Read the filter columns a filter needs (those not read yet)."""
        needed = {"kind": bool(kinds), "session_id": session is not None,
                  "agent_id": agent is not None}  # fmt: skip
        for name, wanted in needed.items():
            if wanted:
                self._read_column(conn, name)

    def _mask(
        self, kinds: tuple[str, ...], session_id: str | None, agent_id: str | None
    ) -> npt.NDArray[np.bool_] | None:
        """:meth:`mask`, under the lock, with the columns it needs read."""
        keep: npt.NDArray[np.bool_] | None = None
        if kinds:
            keep = self._kind_masks.get(kinds)
            if keep is None:
                keep = self._columns["kind"].rows_with(kinds, self._rows)
                self._kind_masks[kinds] = keep
        for name, value in (("session_id", session_id), ("agent_id", agent_id)):
            if value is not None:
                same = self._columns[name].rows_with((value,), self._rows)
                keep = same if keep is None else keep & same
        return keep

    def record_ids(self, conn: sqlite3.Connection, rows: Sequence[int]) -> list[str | None]:
        """The record id of each row (None: the record is gone, deleted by another process).
        Ids are looked up by rowid the first time a row is a hit, then kept."""
        with self._lock:  # appended rows have their ids
            missing = [row for row in rows if self._ids[row] is None]
        rowids = self._rowids[missing].tolist()
        found = dict(owned_rows(conn, self.user_id, "rowid, id", "rowid", rowids))
        with self._lock:
            ids = self._ids
            for row, rowid in zip(missing, rowids, strict=True):
                ids[row] = found.get(rowid, ids[row])
            return [ids[row] for row in rows]

    def search(
        self, conn: sqlite3.Connection, query: Vectors, where: RecordFilter, limit: int
    ) -> list[ScoredId]:
        """The ``limit`` best (record id, cosine) pairs among the rows ``where`` allows."""
        if limit <= 0:
            return []
        kinds = tuple(k.value for k in where.kinds)
        self._read_columns(conn, kinds, where.session_id, where.agent_id)
        with self._lock:
            if self._rows == 0:
                return []
            keep = self._mask(kinds, where.session_id, where.agent_id)
            if self._dead is not None:
                alive = ~self._dead[: self._rows]
                keep = alive if keep is None else keep & alive
            hits = top_k(self._scores(query), limit, keep)
        ids = self.record_ids(conn, [row for row, _ in hits])
        return [(rid, score) for rid, (_, score) in zip(ids, hits, strict=True) if rid is not None]

    def scores(self, query: Vectors) -> Vectors:
        """Cosine similarity of every row with ``query`` (rows and query are unit vectors)."""
        with self._lock:
            return self._scores(query)

    def _scores(self, query: Vectors) -> Vectors:
        """:meth:`scores`, under the lock. The last query's scores are kept: one search runs
        several retrievers with the same vector.

        The product runs on one BLAS thread: OpenBLAS threads keep spinning after a call and
        fight the embedding model's threads for the cores. Measured on 2 cores
        (docs/benchmarks.md), a query (embed, then search) took ~80 ms with a threaded product
        and ~20 ms without; the product itself is 0.3 ms at 5k vectors and 10 ms at 100k."""
        vector = query.astype(np.float32)
        key = vector.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        with one_blas_thread():
            scores: Vectors = self.matrix @ vector
        self._last = (key, scores)
        return scores


def load_user_matrix(conn: sqlite3.Connection, user_id: str, dim: int) -> UserMatrix:
    """The user's vectors, read in one read transaction (a consistent snapshot)."""
    began = not conn.in_transaction
    if began:
        conn.execute("BEGIN")
    try:
        (rows,) = conn.execute(
            "SELECT COUNT(*) FROM vectors WHERE user_id = ?", (user_id,)
        ).fetchone()
        matrix = UserMatrix(user_id, dim, rows)
        (encoding,) = conn.execute("PRAGMA encoding").fetchone()
        read = _read_concatenated if encoding == "UTF-8" else _read_rows
        chunks = read(conn, user_id, dim)
        if rows * dim * 4 >= _THREADED:
            _fill_in_background(matrix, chunks)
        else:
            for rowids, vectors in chunks:
                matrix._fill(rowids, vectors)
    finally:
        if began:
            conn.execute("COMMIT")
    if matrix.matrix.shape[0] != rows:
        raise StoreError(f"the vectors of user {user_id!r} changed while loading")
    return matrix


def _fill_in_background(matrix: UserMatrix, chunks: Iterator[tuple[RowIds, Vectors]]) -> None:
    """Copy the chunks into the matrix in a second thread while this one reads the next ones:
    the first write to each page of a fresh matrix costs a page fault, about a third of a load,
    which then overlaps SQLite's reading (both release the GIL)."""
    pending: queue.Queue[tuple[RowIds, Vectors] | None] = queue.Queue(maxsize=4)
    failed: list[Exception] = []

    def copy() -> None:
        while (item := pending.get()) is not None:
            try:
                if not failed:
                    matrix._fill(*item)
            except Exception as exc:  # raised in the loading thread, below
                failed.append(exc)

    worker = threading.Thread(target=copy, name="engram-matrix-fill", daemon=True)
    worker.start()
    try:
        for chunk in chunks:
            pending.put(chunk)
    finally:
        pending.put(None)
        worker.join()
    if failed:
        raise failed[0]


_CONCATENATED = (
    "SELECT group_concat(rowid), CAST(group_concat(vector, '') AS BLOB) FROM ("
    "SELECT rowid, vector FROM vectors WHERE user_id = ? AND rowid > ? ORDER BY rowid LIMIT ?)"
)


def _read_concatenated(
    conn: sqlite3.Connection, user_id: str, dim: int
) -> Iterator[tuple[RowIds, Vectors]]:
    """The user's rowids and vectors, ``_CHUNK`` rows per statement, in rowid order. SQLite
    joins each chunk's blobs itself (in a UTF-8 database ``group_concat`` keeps a blob's bytes),
    so Python handles one bytes object per chunk, not one per row; the rowids come from the same
    aggregate, in the same order as the bytes."""
    last = -(2**63)
    while True:
        text, blob = conn.execute(_CONCATENATED, (user_id, last, _CHUNK)).fetchone()
        if text is None:
            return
        rowids = np.fromstring(text, dtype=np.int64, sep=",")
        if len(blob) != len(rowids) * dim * 4:
            raise StoreError(f"stored vectors of user {user_id!r} are not {dim}-dimensional")
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(rowids), dim)
        if np.any(rowids[1:] <= rowids[:-1]):  # SQLite promises no order within an aggregate
            order = np.argsort(rowids)
            rowids, vectors = rowids[order], vectors[order]
        yield rowids, vectors
        last = int(rowids[-1])


def _read_rows(
    conn: sqlite3.Connection, user_id: str, dim: int
) -> Iterator[tuple[RowIds, Vectors]]:
    """The same, one row at a time (any database encoding)."""
    cursor = conn.execute(
        "SELECT rowid, vector FROM vectors WHERE user_id = ? ORDER BY rowid", (user_id,)
    )
    while chunk := cursor.fetchmany(_CHUNK):
        rowids = np.fromiter(map(itemgetter(0), chunk), dtype=np.int64, count=len(chunk))
        blob = b"".join(map(itemgetter(1), chunk))
        if len(blob) != len(chunk) * dim * 4:
            raise StoreError(f"stored vectors of user {user_id!r} are not {dim}-dimensional")
        yield rowids, np.frombuffer(blob, dtype=np.float32).reshape(len(chunk), dim)
