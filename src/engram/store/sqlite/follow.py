"""Caches that follow other processes' inserts instead of loading everything again.

Several processes on one SQLite file (``engram serve --workers N``, or any programs sharing a
file) each keep their own per-user caches: the vector matrix (vectors.py) and the ref memo
(refs.py). A write by another process leaves them stale. When that process only inserted
(``Generation.only_inserts_since``: no update, delete or forget of the user since the cache was
made), the cache is brought up to date by reading just the new rows: the vectors above the
highest rowid the matrix has read, and nothing for the memo (an insert changes no stored ref).

It happens where this process next meets the user: a search (``UserCache.get(follow=...)``,
in the search's snapshot) or a write (:func:`behind_others`, in the write's transaction, before
its own rows, so that the write's carry-over finds the cache at the generation it starts from).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import numpy as np

from engram.errors import StoreError
from engram.store.sqlite.ops import Generation, generation
from engram.store.sqlite.refs import RefMemos
from engram.store.sqlite.usercache import Follow, UserCache
from engram.store.sqlite.vectors import Row, UserMatrix

__all__ = ["behind_others", "follow_matrix", "follow_user_matrix"]

_NEW_ROWS = (
    "SELECT v.rowid, r.id, r.kind, r.session_id, r.agent_id, v.vector "
    "FROM vectors v JOIN records r ON r.rowid = v.rowid "
    "WHERE v.user_id = ? AND v.rowid > ? ORDER BY v.rowid"
)


def follow_user_matrix(
    conn: sqlite3.Connection, matrix: UserMatrix, dim: int
) -> Callable[[UserMatrix], UserMatrix] | None:
    """What brings ``matrix`` up to ``conn``'s snapshot when others only inserted rows since
    it was made (the caller checks that; see ``Generation.only_inserts_since``): the rows
    above its highest rowid, read here, appended by the update returned (under the cache's
    lock). None if the matrix cannot follow (this process deleted rows from it)."""
    if not matrix.followable:
        return None
    found = conn.execute(_NEW_ROWS, (matrix.user_id, matrix.seen)).fetchall()
    rowids = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
    rows: list[Row] = [(str(r[1]), str(r[2]), r[3], r[4]) for r in found]
    blob = b"".join(r[5] for r in found)
    if len(blob) != len(found) * dim * 4:
        raise StoreError(f"stored vectors of user {matrix.user_id!r} are not {dim}-dimensional")
    vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(found), dim)
    return lambda m: m.catch_up(rowids, rows, vectors)


def follow_matrix(conn: sqlite3.Connection, now: Generation, dim: int) -> Follow[UserMatrix]:
    """The ``follow`` of a search in ``conn``'s snapshot, where the user is at ``now``."""

    def follow(since: int, matrix: UserMatrix) -> Callable[[UserMatrix], UserMatrix] | None:
        return follow_user_matrix(conn, matrix, dim) if now.only_inserts_since(since) else None

    return follow


def behind_others(
    conn: sqlite3.Connection, user_id: str, matrices: UserCache[UserMatrix], refs: RefMemos,
    dim: int,
) -> Callable[[], None]:  # fmt: skip
    """What brings this process's cached matrix and ref memo of the user up to the
    generation a write starts from, when other processes only inserted since they were made:
    read in the write's transaction before its own rows go in, applied after the commit and
    before the write is carried over them (else the carry-over would drop them, and the next
    search would load every vector again)."""
    now = generation(conn, user_id)
    steps = [
        matrices.prepare_follow(user_id, now.gen, follow_matrix(conn, now, dim)),
        refs.prepare_follow(user_id, now),
    ]

    def apply() -> None:
        for step in steps:
            if step is not None:
                step()

    return apply
