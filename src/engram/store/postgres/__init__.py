"""The PostgreSQL + pgvector store (the ``postgres`` extra: psycopg 3, psycopg_pool, pgvector).

``from engram.store.postgres import PostgresStore``; the driver is imported on first use of the
name, so that this package imports without it (a missing driver is a ConfigurationError)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engram.store.postgres.connect_url import display_db, is_postgres_url

if TYPE_CHECKING:
    from engram.store.postgres.store import PostgresStore

__all__ = ["PostgresStore", "display_db", "is_postgres_url"]

_DRIVERS = ("psycopg", "psycopg_pool", "pgvector")


def __getattr__(name: str) -> Any:
    if name != "PostgresStore":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from engram.store.postgres.store import PostgresStore
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _DRIVERS:
            raise
        from engram.errors import ConfigurationError

        raise ConfigurationError(
            f"the PostgreSQL store needs {exc.name}: pip install 'engram-memory[postgres]'"
        ) from exc
    return PostgresStore
