"""Telling a PostgreSQL URL from a file name, and naming it without its password, without
importing the driver."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["display_db", "is_postgres_url"]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` (a ``--db`` value, ``ENGRAM_DB``) names a PostgreSQL database."""
    return isinstance(value, str) and value.strip().lower().startswith(_SCHEMES)


def display_db(db: str) -> str:
    """``db`` as messages may show it: a PostgreSQL URL without its password and query."""
    if not is_postgres_url(db):
        return db
    try:
        parts = urlsplit(db.strip())
        user = f"{parts.username}@" if parts.username else ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "postgresql://(an unreadable URL)"
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
