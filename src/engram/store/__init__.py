"""Storage backends behind one small protocol."""

from engram.store.base import ScoredId, Store
from engram.store.sqlite import SqliteStore

__all__ = ["ScoredId", "SqliteStore", "Store"]
