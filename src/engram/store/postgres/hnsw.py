"""One HNSW index per large user: a partial index ``WHERE user_id = '<user>'``.

Why not one index over every user's vectors: a search filtered to one user walks a graph made
mostly of other users' nodes (pgvector's iterative scan must visit many of them to fill its
limit), and every insert of every user pays for maintaining a graph that no search of a small
user reads (those are searched exactly: :mod:`~engram.store.postgres.vectors`). A partial index
per user who has at least ``exact_below`` vectors holds that user's vectors only: a search walks
them alone, and writes of the many small users maintain no graph at all (pgvector's advice for
filtering on a column with few matching rows: partial indexes).

Lifecycle (:func:`ensure`, :func:`drop`): the add that brings a user to the threshold (or any
later add of a user over it whose index is missing or invalid) builds the index with ``CREATE
INDEX CONCURRENTLY`` after its transaction committed (other writers and readers go on; the
build scans the table once and the user's rows into memory), under a session advisory lock per
user so that one process builds it while the others go on without. Until it is valid the user is
searched exactly. Forgetting the user drops it (``DROP INDEX CONCURRENTLY``). Expression:
``embedding::halfvec(dim)``, inner product, ``m`` and ``ef_construction`` as given (the vectors
are unit vectors; halfvec halves the index and the candidates are re-scored in full precision).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

from psycopg import Connection, errors, sql

__all__ = [
    "EF_CONSTRUCTION",
    "HALFVEC_MAX_DIM",
    "M",
    "drop",
    "ensure",
    "index_name",
    "is_valid",
    "usable",
    "wanted",
]

HALFVEC_MAX_DIM = 4000  # the most dimensions an HNSW index on halfvec takes
M, EF_CONSTRUCTION = 16, 64  # pgvector's defaults

log = logging.getLogger(__name__)


def index_name(user_id: str) -> str:
    """The name of the user's index (a digest: user ids are free text, names are not)."""
    return "records_hnsw_" + hashlib.sha256(user_id.encode()).hexdigest()[:24]


_VALID = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE c.relname = %s AND c.relnamespace = to_regnamespace(%s)"
)


def is_valid(conn: Connection[Any], schema: str, user_id: str) -> bool | None:
    """True: the user's index exists and is valid; False: it exists, invalid (a build that
    failed or is in progress); None: there is none."""
    row = conn.execute(_VALID, (index_name(user_id), schema)).fetchone()
    return None if row is None else bool(row[0])


def _state(conn: Connection[Any], schema: str, user_id: str) -> tuple[int, bool | None]:
    """The user's vector count and :func:`is_valid`, in one round trip (in a transaction acting
    for the user: ``user_stats`` has row-level security)."""
    row = conn.execute(
        f"SELECT (SELECT vectors FROM user_stats WHERE user_id = %s), ({_VALID})",
        (user_id, index_name(user_id), schema),
    ).fetchone()
    assert row is not None  # scalar subqueries: always one row
    return int(row[0] or 0), None if row[1] is None else bool(row[1])


def usable(conn: Connection[Any], schema: str, user_id: str, exact_below: int) -> bool:
    """Whether a search of the user goes through the index: at least ``exact_below`` vectors
    and a valid index."""
    vectors, valid = _state(conn, schema, user_id)
    return vectors >= exact_below and bool(valid)


def wanted(conn: Connection[Any], schema: str, user_id: str, exact_below: int) -> bool:
    """Whether the user has ``exact_below`` vectors (at least one) and no valid index."""
    vectors, valid = _state(conn, schema, user_id)
    return vectors >= max(1, exact_below) and not valid


def _locked(conn: Connection[Any], schema: str, user_id: str, take: bool) -> bool:
    key = f"engram-hnsw:{schema}\x1f{user_id}"
    if take:
        got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 2))", (key,))
        return bool(got.fetchone()[0])  # type: ignore[index]
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 2))", (key,))
    return False


def ensure(
    conn: Connection[Any],
    schema: str,
    user_id: str,
    dim: int,
    *,
    m: int = M,
    ef_construction: int = EF_CONSTRUCTION,
) -> bool:
    """Make the user's index unless it is there (on an autocommit connection outside any
    transaction); True if it is valid afterwards. Another process building it, or a build that
    fails (it is logged; the next add tries again), returns False: the user's searches stay
    exact meanwhile."""
    if dim > HALFVEC_MAX_DIM or not _locked(conn, schema, user_id, True):
        return False
    try:
        state = is_valid(conn, schema, user_id)
        if state:
            return True
        if state is False:  # a build that did not finish leaves an invalid index behind
            drop(conn, schema, user_id)
        conn.execute(
            sql.SQL(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} USING hnsw "
                "((embedding::halfvec({})) halfvec_ip_ops) WITH (m = {}, ef_construction = {}) "
                "WHERE user_id = {}"
            ).format(
                sql.Identifier(index_name(user_id)),
                sql.Identifier(schema, "records"),
                sql.Literal(int(dim)),
                sql.Literal(int(m)),
                sql.Literal(int(ef_construction)),
                sql.Literal(user_id),
            )
        )
        return bool(is_valid(conn, schema, user_id))
    except errors.Error as exc:
        log.warning("the HNSW index of a user could not be built (searched exactly): %s", exc)
        return False
    finally:
        with contextlib.suppress(errors.Error):  # a connection gone took its lock with it
            _locked(conn, schema, user_id, False)


def drop(conn: Connection[Any], schema: str, user_id: str) -> None:
    """Drop the user's index if there is one (autocommit, outside any transaction)."""
    conn.execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(schema, index_name(user_id))
        )
    )
