"""Storage backends behind one small protocol."""

from __future__ import annotations

from pathlib import Path

from engram.store.base import ScoredId, Store
from engram.store.sqlite import SqliteStore

__all__ = ["ScoredId", "SqliteStore", "Store", "open_store"]


def open_store(path: str | Path, *, read_only: bool | None = None, timeout: float = 30.0) -> Store:
    """The store at ``path``: a ``postgresql://`` (or ``postgres://``) URL opens a
    :class:`~engram.store.postgres.PostgresStore` (the ``postgres`` extra; docs/postgres.md),
    anything else a :class:`SqliteStore` file (or ``":memory:"``)."""
    from engram.store.postgres import is_postgres_url

    if is_postgres_url(path):
        from engram.store.postgres import PostgresStore

        return PostgresStore(str(path), read_only=read_only, timeout=timeout)
    return SqliteStore(path, read_only=read_only, timeout=timeout)
