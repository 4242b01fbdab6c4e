"""Re-indexing a SQLite store under another embedder in one transaction
(:meth:`~engram.store.base.Store.replace_vectors`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from engram.embed.base import Vectors
from engram.errors import ConfigurationError
from engram.store.base import check_still_bound, stale_records
from engram.store.sqlite.ops import bump

__all__ = ["check_bound", "replace_all"]


def check_bound(conn: sqlite3.Connection, where: str, name: str) -> None:
    """Raise unless the store is still bound to the embedder ``name``."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    check_still_bound(where, None if row is None else str(row[0]), name)


def replace_all(
    conn: sqlite3.Connection, name: str, dim: int, ids: Sequence[str], vectors: Vectors,
    digests: Sequence[int],
) -> list[tuple[str, str]]:  # fmt: skip
    """In the caller's write transaction: every record's vector from ``ids`` / ``vectors`` and
    the embedder recorded, or nothing and the records that have no vector of their current
    text (:func:`~engram.store.base.stale_records`)."""
    where = {record_id: i for i, record_id in enumerate(ids)}
    rows = conn.execute("SELECT rowid, id, user_id, text FROM records").fetchall()
    missing = stale_records([(i, u, t) for _, i, u, t in rows], where, digests)
    if missing:
        return missing
    if len(ids) and vectors.shape[1] != dim:
        raise ConfigurationError(f"vectors have dimension {vectors.shape[1]}, not {dim}")
    conn.executemany(
        "UPDATE vectors SET vector = ? WHERE rowid = ?",
        (
            (np.asarray(vectors[where[record_id]], dtype=np.float32).tobytes(), rowid)
            for rowid, record_id, _, _ in rows
        ),
    )
    for key, value in (("embedder", name), ("dim", str(dim))):
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
    for user_id in sorted({user_id for _, _, user_id, _ in rows}):
        bump(conn, user_id, insert_only=False)  # every cached matrix is stale
    return []
