"""The embedded SQLite store."""

from engram.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
