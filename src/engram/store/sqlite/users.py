"""The listing of the users that have records: one index seek per user on an index that starts
with ``user_id`` (``records_scope`` (user_id, session_id, seq) or the narrower ``records_kind``
(user_id, kind), as SQLite's planner picks), so that a page costs ``limit`` seeks however many
records each user holds."""

from __future__ import annotations

import sqlite3

from engram.store.base import prefix_end

__all__ = ["list_users"]


def list_users(conn: sqlite3.Connection, prefix: str, limit: int, after: str | None) -> list[str]:
    """The distinct user ids of ``records`` that start with ``prefix``, above ``after``, in
    BINARY (UTF-8 byte, so code point) order, at most ``limit`` of them. A recursive query
    steps from one user to the next with ``MIN(user_id) ... WHERE user_id > previous`` (an
    index seek each), within ``prefix <= user_id < prefix_end(prefix)``."""
    end = prefix_end(prefix)
    if limit <= 0 or (after is not None and end is not None and after >= end):
        return []
    first = (
        ("user_id > ?", after)
        if after is not None and after >= prefix
        else ("user_id >= ?", prefix)
    )
    below, bound = ("AND user_id < ?", [end]) if end is not None else ("", [])
    rows = conn.execute(
        "WITH RECURSIVE u(id) AS ("
        f"SELECT (SELECT MIN(user_id) FROM records WHERE {first[0]} {below}) "
        f"UNION ALL SELECT (SELECT MIN(user_id) FROM records WHERE user_id > u.id {below}) "
        "FROM u WHERE u.id IS NOT NULL LIMIT ?"
        ") SELECT id FROM u WHERE id IS NOT NULL AND substr(id, 1, ?) = ?",
        [first[1], *bound, *bound, limit, len(prefix), prefix],
    ).fetchall()
    return [str(row[0]) for row in rows]
