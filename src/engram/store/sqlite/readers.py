"""The read connections of a SQLite store: one for each read running at the moment, so that
reads in several threads run at once, beside the writer (WAL gives each its own snapshot).

A read takes an idle connection (or opens one), runs in one read transaction on it and hands it
back when the transaction has ended; no connection keeps a transaction open between calls, where
it would stop the writer's ``wal_checkpoint(TRUNCATE)``. Connections are shared between threads
(``check_same_thread=False``) rather than kept one per thread: a thread pool that starts and ends
threads then never leaves connections behind, and there are never more connections than reads
that ran at the same time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engram.store.sqlite.connect import read_transaction

__all__ = ["ReadConnections"]


class ReadConnections:
    """A pool of read connections made by ``open_one``. Thread-safe."""

    def __init__(self, open_one: Callable[[], sqlite3.Connection]) -> None:
        self._open_one = open_one
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []  # the most recently used last
        self._opened: set[sqlite3.Connection] = set()  # idle or in use, all still open
        self._closed = False

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection in a read transaction, ended (and the connection handed back) on exit."""
        conn = self._take()
        try:
            with read_transaction(conn):
                yield conn
        finally:
            self._give_back(conn)

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            if self._idle:
                return self._idle.pop()  # the warmest page cache
        conn = self._open_one()  # outside the lock: opening waits for a busy file
        with self._lock:
            if not self._closed:
                self._opened.add(conn)
                return conn
        conn.close()
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    def _give_back(self, conn: sqlite3.Connection) -> None:
        try:
            healthy = not conn.in_transaction  # a transaction that would not end: not reused
        except sqlite3.Error:
            healthy = False
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(conn)
                return
            self._opened.discard(conn)
        conn.close()

    def __len__(self) -> int:
        """How many connections are open (idle or in use)."""
        with self._lock:
            return len(self._opened)

    def close(self) -> None:
        """Close the idle connections now; one in use closes when its read ends. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._opened.difference_update(idle)
        for conn in idle:
            conn.close()
