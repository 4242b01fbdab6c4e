"""Telling a PostgreSQL URL from a file name, without importing the driver."""

from __future__ import annotations

__all__ = ["is_postgres_url"]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` (a ``--db`` value, ``ENGRAM_DB``) names a PostgreSQL database."""
    return isinstance(value, str) and value.strip().lower().startswith(_SCHEMES)
