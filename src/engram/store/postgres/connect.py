"""Connecting to PostgreSQL: the connection pool, the per-connection settings, and psycopg's
errors turned into Engram's (:class:`StoreError`, :class:`StoreLockedError`,
:class:`ConflictError`), with messages that name the database but never its password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection, errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from engram.errors import ConflictError, StoreError, StoreLockedError

__all__ = [
    "connect_once",
    "describe",
    "extension_schema",
    "open_pool",
    "store_error",
    "translate_errors",
]


def describe(url: str) -> str:
    """``postgresql://user@host:port/dbname``, without the password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(an unreadable URL)"
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


# SQLSTATE classes: what a failure means for the caller
_CONFLICT = (errors.SerializationFailure, errors.DeadlockDetected)
_LOCKED = (errors.LockNotAvailable, errors.QueryCanceled)


def store_error(where: str, exc: BaseException, *, timeout: float) -> StoreError:
    """The Engram error for a psycopg (or pool) error."""
    if isinstance(exc, _CONFLICT):
        return ConflictError(f"{where}: a concurrent write got in the way; nothing was written")
    if isinstance(exc, _LOCKED):
        return StoreLockedError(f"{where}: waited {timeout:g} s for a lock; nothing was written")
    if isinstance(exc, PoolTimeout):
        return StoreLockedError(f"{where}: no free connection within {timeout:g} s")
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreError(f"{where}: permission denied ({exc}); see docs/postgres.md for roles")
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreError(f"{where}: cannot reach the database: {text}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(f"{where}: nothing was written: {text}")


@contextmanager
def translate_errors(where: str, *, timeout: float) -> Iterator[None]:
    """Raise the :func:`store_error` of any psycopg or pool error raised inside."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        raise store_error(where, exc, timeout=timeout) from exc


def _settings(schema: str, extension_schema: str, timeout: float) -> dict[str, str]:
    path = ", ".join(dict.fromkeys([schema, extension_schema, "public"]))
    return {
        "search_path": path,
        "TimeZone": "UTC",
        "lock_timeout": f"{int(timeout * 1000)}ms",
        "idle_in_transaction_session_timeout": "60s",
    }


def _options(settings: dict[str, str]) -> str:
    return " ".join(f"-c {key}={value.replace(' ', '')}" for key, value in settings.items())


def connect_once(url: str, *, timeout: float) -> Connection[Any]:
    """One autocommit connection (for the migrations), UTC, failing within ``timeout``."""
    conn = psycopg.connect(
        url, autocommit=True, connect_timeout=max(1, int(timeout)), options="-c TimeZone=UTC"
    )
    return conn


def extension_schema(conn: Connection[Any]) -> str:
    row = conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
    ).fetchone()
    return "public" if row is None else str(row[0])


def open_pool(
    url: str, *, schema: str, ext_schema: str, timeout: float, min_size: int, max_size: int
) -> ConnectionPool[Connection[Any]]:
    """A pool of autocommit connections with the store's settings and pgvector's types (each
    transaction is an explicit ``conn.transaction()``), opened and checked before it is
    returned."""
    from pgvector.psycopg import register_vector

    def configure(conn: Connection[Any]) -> None:
        register_vector(conn)

    pool: ConnectionPool[Connection[Any]] = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(timeout)),
            "options": _options(_settings(schema, ext_schema, timeout)),
        },
        configure=configure,
        timeout=timeout,
        open=False,
        name="engram",
    )
    try:
        pool.open(wait=True, timeout=timeout)
    except BaseException:
        pool.close()
        raise
    return pool
