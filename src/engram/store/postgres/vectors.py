"""Vector search in PostgreSQL: exact for small scopes, the user's HNSW index for large ones.

Scores are inner products (the vectors are unit vectors: the cosine, as the SQLite store's
``matrix @ query``), computed by pgvector over the stored full-precision vectors.

- **Exact** (a user with fewer than ``exact_below`` vectors, a session scope, vectors too wide
  for an index): ``ORDER BY embedding <#> q`` over the user's rows, found by the ``user_id``
  indexes. It is what SQLite returns, and at a few thousand rows faster than an index.
- **HNSW** (a user with at least ``exact_below`` vectors whose index is valid:
  :mod:`~engram.store.postgres.hnsw`): ``ORDER BY embedding::halfvec(dim) <#> q::halfvec(dim)``
  (the index's expression) with the user id as a literal too (a partial index is chosen only
  for a predicate the planner can see), ``hnsw.iterative_scan = relaxed_order`` so a filter by
  kind that rejects many nodes still fills the limit (the scan goes on until
  ``hnsw.max_scan_tuples``), ``hnsw.ef_search`` of ``ef_search`` or twice the rows asked,
  whichever is more, and ``enable_sort = off`` (the plan must not depend on row estimates).
  The candidates (twice the limit) are re-scored with the full-precision vectors and the best
  ``limit`` returned, best first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import Connection, sql

from engram.embed.base import Vectors
from engram.store.base import ScoredId
from engram.store.postgres import hnsw
from engram.store.postgres.rows import where_sql
from engram.types import RecordFilter

__all__ = ["search"]

MAX_EF_SEARCH = 1000  # pgvector's largest hnsw.ef_search


def _exact(
    conn: Connection[Any], query: Vectors, where: RecordFilter, limit: int
) -> list[ScoredId]:
    clause, params = where_sql(where)
    rows = conn.execute(
        f"SELECT id, -(embedding <#> %s) FROM records WHERE {clause} "
        "ORDER BY embedding <#> %s, rid LIMIT %s",
        [query, *params, query, limit],
    ).fetchall()
    return [(str(rid), float(score)) for rid, score in rows]


def _approximate(
    conn: Connection[Any], query: Vectors, where: RecordFilter, limit: int, dim: int, ef: int
) -> list[ScoredId]:
    candidates = min(2 * limit, 10 * MAX_EF_SEARCH)
    conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
    ef = max(1, min(MAX_EF_SEARCH, max(ef, 2 * candidates)))
    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
    # the index, never a sort: a user's row estimate may be stale (just over the threshold,
    # not analyzed yet), and the plan must not depend on it
    conn.execute("SELECT set_config('enable_sort', 'off', true)")
    clause, params = where_sql(where)
    half = f"halfvec({int(dim)})"
    statement = sql.SQL(
        f"SELECT id, rid, -(embedding <#> %s) FROM records WHERE {clause} AND user_id = {{}} "
        f"ORDER BY embedding::{half} <#> %s::vector::{half} LIMIT %s"
    ).format(sql.Literal(where.user_id))
    rows = conn.execute(statement, [query, *params, query, candidates]).fetchall()
    best = sorted(rows, key=lambda row: (-float(row[2]), int(row[1])))[:limit]
    return [(str(rid), float(score)) for rid, _, score in best]


def search(
    conn: Connection[Any],
    query: Vectors,
    where: RecordFilter,
    limit: int,
    *,
    dim: int | None,
    schema: str,
    indexed: bool,
    exact_below: int,
    ef_search: int,
) -> list[ScoredId]:
    """The ``limit`` best (record id, score) pairs in the filter's scope, best first."""
    if limit <= 0 or dim is None:
        return []
    vector = np.asarray(query, dtype=np.float32).reshape(-1)
    if (
        not indexed
        or where.session_id is not None
        or not hnsw.usable(conn, schema, where.user_id, exact_below)
    ):
        return _exact(conn, vector, where, limit)
    return _approximate(conn, vector, where, limit, dim, ef_search)
