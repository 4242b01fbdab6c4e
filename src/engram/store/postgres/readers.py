"""The read queries of the PostgreSQL store, each in the caller's transaction (acting for the
user it names)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from psycopg import Connection

from engram.embed.base import Vectors
from engram.errors import ConfigurationError
from engram.store.base import prefix_end
from engram.store.postgres.rows import (
    AFTER_SQL,
    HISTORY_COLUMNS,
    LIST_ORDER,
    RECORD_COLUMNS,
    REF_COLUMNS,
    after_params,
    history_from_row,
    owned_rows,
    record_from_row,
    ref_from_row,
    where_sql,
)
from engram.store.postgres.schema import RLS_TABLES
from engram.types import HistoryEvent, MemoryRecord, RecordFilter, StoreStats

__all__ = [
    "check_embedder",
    "get_vectors",
    "history",
    "last_turns",
    "list_records",
    "list_users",
    "records_by_id",
    "speakers",
    "store_stats",
]


def records_by_id(
    conn: Connection[Any], user_id: str, ids: Sequence[str], *, refs: bool = False
) -> list[Any]:
    """The user's records (or :class:`KeyRef` with ``refs``) among ``ids``, in no order."""
    if refs:
        return [ref_from_row(row) for row in owned_rows(conn, user_id, REF_COLUMNS, "id", ids)]
    return [record_from_row(row) for row in owned_rows(conn, user_id, RECORD_COLUMNS, "id", ids)]


def get_vectors(conn: Connection[Any], user_id: str, ids: Sequence[str]) -> dict[str, Vectors]:
    return {
        str(rid): np.asarray(vector.to_numpy(), dtype=np.float32)
        for rid, vector in owned_rows(conn, user_id, "id, embedding", "id", ids)
    }


def last_turns(conn: Connection[Any], user_id: str, session_id: str, n: int) -> list[MemoryRecord]:
    rows = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM records WHERE user_id = %s AND session_id = %s "
        "AND kind = 'turn' ORDER BY seq DESC, rid DESC LIMIT %s",
        (user_id, session_id, n),
    ).fetchall()
    return [record_from_row(row) for row in reversed(rows)]


def list_records(
    conn: Connection[Any], where: RecordFilter, limit: int, offset: int,
    after: MemoryRecord | None,
) -> list[MemoryRecord]:  # fmt: skip
    clause, params = where_sql(where)
    if after is not None:
        clause += f" AND {AFTER_SQL}"
        params = [*params, *after_params(where.user_id, after)]
    rows = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM records WHERE {clause} {LIST_ORDER} LIMIT %s OFFSET %s",
        [*params, limit, offset],
    ).fetchall()
    return [record_from_row(row) for row in rows]


def history(conn: Connection[Any], user_id: str, record_id: str) -> list[HistoryEvent]:
    rows = conn.execute(
        f"SELECT {HISTORY_COLUMNS} FROM history WHERE user_id = %s AND record_id = %s ORDER BY hid",
        (user_id, record_id),
    ).fetchall()
    return [history_from_row(row) for row in rows]


def speakers(conn: Connection[Any], user_id: str) -> frozenset[str]:
    rows = conn.execute(
        "SELECT DISTINCT name FROM records "
        "WHERE user_id = %s AND kind = 'turn' AND name IS NOT NULL",
        (user_id,),
    )
    return frozenset(str(row[0]) for row in rows)


def list_users(conn: Connection[Any], prefix: str, limit: int, after: str | None) -> list[str]:
    """The distinct user ids that start with ``prefix``, above ``after``, in byte order (the
    "C" collation of ``user_id``), at most ``limit``: a recursive query that steps from user to
    user by one seek on ``records_scope`` each (the caller's transaction reads every user's
    rows: ``engram.all_users`` on)."""
    end = prefix_end(prefix)
    if limit <= 0 or (after is not None and end is not None and after >= end):
        return []
    first = (
        ("user_id > %s", after)
        if after is not None and after >= prefix
        else ("user_id >= %s", prefix)
    )
    below, bound = ("AND user_id < %s", [end]) if end is not None else ("", [])
    rows = conn.execute(
        "WITH RECURSIVE u(id) AS ("
        f"SELECT (SELECT MIN(user_id) FROM records WHERE {first[0]} {below}) "
        f"UNION ALL SELECT (SELECT MIN(user_id) FROM records WHERE user_id > u.id {below}) "
        "FROM u WHERE u.id IS NOT NULL"
        ") SELECT id FROM u WHERE id IS NOT NULL AND left(id, %s) = %s LIMIT %s",
        [first[1], *bound, *bound, len(prefix), prefix, limit],
    ).fetchall()
    return [str(row[0]) for row in rows]


def check_embedder(conn: Connection[Any], where: str, name: str, dim: int) -> bool:
    """Whether ``name`` and ``dim`` are what the store recorded; raise if they conflict
    (reads every user's records: the caller's transaction has ``engram.all_users`` on)."""
    stored = dict(
        conn.execute("SELECT key, value FROM meta WHERE key IN ('embedder', 'dim')").fetchall()
    )
    stored_name, stored_dim = stored.get("embedder"), stored.get("dim")
    if stored_dim is not None and int(stored_dim) != dim:
        raise ConfigurationError(
            f"{where} holds {stored_dim}-dimensional vectors from {stored_name!r}; "
            f"embedder {name!r} makes {dim}-dimensional ones"
        )
    vectors = conn.execute("SELECT 1 FROM records LIMIT 1").fetchone()
    if stored_name is not None and stored_name != name and vectors:
        raise ConfigurationError(f"{where} was indexed with embedder {stored_name!r}, not {name!r}")
    return stored_name == name and stored_dim == str(dim)


def store_stats(conn: Connection[Any], user_id: str | None, dim: int | None) -> StoreStats:
    """Counts of one user, or (with ``engram.all_users`` on) of everyone; the size is that of
    all of Engram's tables and indexes."""
    cond, params = ("WHERE user_id = %s", [user_id]) if user_id else ("", [])
    kinds = dict(
        conn.execute(f"SELECT kind, COUNT(*) FROM records {cond} GROUP BY kind", params).fetchall()
    )
    row = conn.execute(
        f"SELECT COUNT(DISTINCT user_id), (SELECT COUNT(*) FROM (SELECT DISTINCT user_id, "
        f"session_id FROM records {cond}) s) FROM records {cond}",
        params * 2,
    ).fetchone()
    users, sessions = (0, 0) if row is None else (int(row[0]), int(row[1]))
    tables = ["meta", *RLS_TABLES]
    size = conn.execute(
        "SELECT SUM(pg_total_relation_size(to_regclass(t))) FROM unnest(%s::text[]) t", (tables,)
    ).fetchone()
    embedder = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    return StoreStats(
        records={str(k): int(v) for k, v in kinds.items()}, users=users, sessions=sessions,
        size_bytes=None if size is None or size[0] is None else int(size[0]),
        embedder=None if embedder is None else str(embedder[0]), dim=dim,
    )  # fmt: skip
