"""Re-indexing a PostgreSQL store under another embedder in one transaction
(:meth:`~engram.store.base.Store.replace_vectors`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from psycopg import Connection, sql

from engram.embed.base import Vectors
from engram.errors import ConfigurationError
from engram.store.base import check_still_bound, stale_records
from engram.store.postgres import hnsw

__all__ = ["check_bound", "replace_all"]

_CHUNK = 2000  # vectors per UPDATE statement

_UPDATE = (
    "UPDATE records SET embedding = v.e FROM unnest(%b::text[], %b::vector[]) AS v (id, e) "
    "WHERE records.user_id = %s AND records.id = v.id"
)


def check_bound(conn: Connection[Any], where: str, name: str) -> None:
    """Raise unless the store is still bound to the embedder ``name``."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    check_still_bound(where, None if row is None else str(row[0]), name)


def replace_all(
    conn: Connection[Any], schema: str, name: str, dim: int, ids: Sequence[str], vectors: Vectors,
    digests: Sequence[int],
) -> tuple[list[tuple[str, str]], list[str]]:  # fmt: skip
    """In the caller's transaction (``engram.all_users`` on): every record's vector from
    ``ids`` / ``vectors`` and the embedder recorded, then the users (their HNSW indexes are
    dropped: the caller builds them again after the commit); or nothing written and the
    records that have no vector of their current text. Writers wait for the table lock
    meanwhile; readers go on with the old vectors until the commit."""
    conn.execute("LOCK TABLE records IN SHARE ROW EXCLUSIVE MODE")
    where = {record_id: i for i, record_id in enumerate(ids)}
    rows = conn.execute("SELECT id, user_id, text FROM records").fetchall()
    missing = stale_records(rows, where, digests)
    if missing:
        return missing, []
    if len(ids) and vectors.shape[1] != dim:
        raise ConfigurationError(f"vectors have dimension {vectors.shape[1]}, not {dim}")
    by_user: dict[str, list[str]] = {}
    for record_id, user_id, _ in rows:
        by_user.setdefault(user_id, []).append(record_id)
    for user_id, mine in sorted(by_user.items()):
        index = sql.Identifier(schema, hnsw.index_name(user_id))
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(index))  # the old model's graph
        conn.execute(  # row-level security: write as the user
            "SELECT set_config('engram.user_id', %s, true), "
            "set_config('engram.all_users', 'off', true)",
            (user_id,),
        )
        for start in range(0, len(mine), _CHUNK):
            chunk = mine[start : start + _CHUNK]
            rows_ = [np.asarray(vectors[where[i]], dtype=np.float32) for i in chunk]
            conn.execute(_UPDATE, (chunk, rows_, user_id))
    conn.execute("SELECT set_config('engram.all_users', 'on', true)")
    for key, value in (("embedder", name), ("dim", str(dim))):
        conn.execute(
            "INSERT INTO meta VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
    return [], sorted(by_user)
