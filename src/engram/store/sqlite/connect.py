"""Opening the SQLite file: look at it before changing anything, then connect, and turn SQLite's
errors into :class:`~engram.errors.StoreError` messages that name the file.

An existing, non-empty file is first inspected through a read-only connection (one that cannot
create tables, switch the journal mode or leave a rollback journal):

- no schema objects at all (a 0-byte or fresh file): **new**; Engram creates its tables;
- ``PRAGMA application_id`` is :data:`~engram.store.sqlite.schema.APPLICATION_ID`: **Engram's**;
- application_id 0, user_version >= 1 and the tables ``meta`` and ``records``: **Engram's**, made
  by a version before the mark existed (a writable open stamps it);
- anything else is **another program's database** and is left byte-for-byte untouched; a file
  SQLite cannot read is **not an SQLite database**; an Engram file that is truncated or fails a
  read is **damaged**.

Only then is a writable file switched to WAL and migrated. A file that is not writable (its
permission bits allow nobody to write it, even when running as root; or ``os.access`` says no; or
its directory is not writable) is opened read-only.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from engram.errors import InvalidInputError, StoreError, StoreLockedError
from engram.store.sqlite.schema import APPLICATION_ID, MIGRATIONS, migrate, not_engrams

__all__ = [
    "in_memory",
    "is_read_only",
    "open_database",
    "open_reader",
    "read_transaction",
    "store_error",
    "translate_errors",
]

_MEMORY = ("", ":memory:")
_ENGRAM_TABLES = ("meta", "records")
# primary result codes (sqlite3.h)
_BUSY, _LOCKED, _READONLY, _CORRUPT, _CANTOPEN, _NOTADB = 5, 6, 8, 11, 14, 26
_READONLY_ROLLBACK, _READONLY_CANTINIT, _READONLY_DIRECTORY = 776, 1288, 1544  # extended


# for an error without a code (one raised by Python code): its message, as SQLite words it
_CODE_BY_TEXT = {
    "database is locked": _BUSY, "readonly database": _READONLY,
    "file is not a database": _NOTADB, "malformed": _CORRUPT, "unable to open": _CANTOPEN,
}  # fmt: skip


def _code(exc: sqlite3.Error) -> int:
    """SQLite's extended result code, -1 if unknown."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code > 0:
        return code
    return next((c for text, c in _CODE_BY_TEXT.items() if text in str(exc)), -1)


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) & 0xFF in (_BUSY, _LOCKED)


def store_error(path: str, exc: sqlite3.Error, *, timeout: float, doing: str = "") -> StoreError:
    """The :class:`StoreError` (or :class:`StoreLockedError`) that says what ``exc`` means for
    the file at ``path``; ``doing`` prefixes the message of an error of no known kind."""
    code, text = _code(exc), str(exc)
    primary = code & 0xFF
    if primary in (_BUSY, _LOCKED):
        return StoreLockedError(f"{path} is locked by another process; waited {timeout:g} s")
    if code == _READONLY_ROLLBACK:
        return StoreError(f"{path} needs recovery from an interrupted write; open it writable")
    if code == _READONLY_DIRECTORY:
        return StoreError(f"{path} is read-only (its directory is not writable)")
    if primary == _READONLY:
        return StoreError(f"{path} is read-only; nothing was written")
    if primary == _NOTADB:
        return StoreError(f"{path} is not an SQLite database")
    if primary == _CORRUPT:
        return StoreError(f"{path} is damaged ({text}); restore it from a backup")
    if primary == _CANTOPEN:
        return StoreError(f"cannot open {path}: {text}")
    return StoreError(f"{path}: {doing}{text}")


@contextmanager
def translate_errors(path: str, *, timeout: float, doing: str = "") -> Iterator[None]:
    """Raise the :func:`store_error` of any ``sqlite3.Error`` raised inside."""
    try:
        yield
    except sqlite3.Error as exc:
        raise store_error(path, exc, timeout=timeout, doing=doing) from exc


def in_memory(path: str) -> bool:
    """Whether ``path`` names a database private to its one connection (``":memory:"``, or
    ``""``: a temporary file), which no second connection can open."""
    return path in _MEMORY


def is_read_only(path: str) -> bool:
    """Whether an existing file must be opened read-only: nobody may write it by its permission
    bits (honoured even for root, who may write any file), or this process may not write it or
    create files (``-wal``, ``-shm``) next to it."""
    if path in _MEMORY or not os.path.exists(path):
        return False
    if not os.stat(path).st_mode & 0o222 or not os.access(path, os.W_OK):
        return True
    return not os.access(os.path.dirname(os.path.abspath(path)) or ".", os.W_OK | os.X_OK)


def _uri(path: str, query: str) -> str:
    return f"{Path(os.path.abspath(path)).as_uri()}?{query}"


def _connect(target: str, *, timeout: float, uri: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(
        target, isolation_level=None, check_same_thread=False, timeout=timeout, uri=uri
    )


def _has_wal(path: str) -> bool:
    """Whether a ``-wal`` file with content lies next to ``path``."""
    try:
        return os.path.getsize(path + "-wal") > 0
    except OSError:
        return False


def _in_wal_mode(path: str) -> bool:
    with open(path, "rb") as f:
        header = f.read(20)
    return header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"


def _probe(path: str, timeout: float) -> bool:
    """Inspect an existing file without changing it; True if it is new (no schema at all),
    False if it is Engram's; else raise."""
    if os.path.getsize(path) == 0:
        return True
    # A WAL-mode file that no connection has open (no -wal, no -shm: the last one to close
    # removes them): "immutable" reads it without creating them. Else the usual locking reader.
    idle = not any(os.path.exists(path + suffix) for suffix in ("-wal", "-shm"))
    query = "immutable=1" if idle and _in_wal_mode(path) else "mode=ro"
    with closing(_connect(_uri(path, query), timeout=timeout, uri=True)) as conn:
        conn.execute("BEGIN")  # one snapshot for every question below
        tables = [str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master")]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        if not tables and not version and application_id in (0, APPLICATION_ID):
            return True
        legacy = not application_id and version > 0 and set(_ENGRAM_TABLES) <= set(tables)
        if application_id != APPLICATION_ID and not legacy:
            raise not_engrams(path, [t for t in tables if not t.startswith("sqlite_")],
                              application_id, version)  # fmt: skip
        _check_intact(conn, path, tables)
    return False


def _check_intact(conn: sqlite3.Connection, path: str, tables: list[str]) -> None:
    """Cheap signs of damage: Engram's tables missing, a table whose first or last page cannot
    be read. (SQLite itself reports a file shorter than its header says as malformed.)"""
    missing = [t for t in _ENGRAM_TABLES if t not in tables]
    if missing:
        raise StoreError(f"{path} is damaged (Engram tables missing: {', '.join(missing)})")
    for table in _ENGRAM_TABLES:
        conn.execute(f"SELECT min(rowid), max(rowid) FROM {table}").fetchone()


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another opener holds the file: switching the
    mode can fail at once with "database is locked" instead of waiting."""
    deadline, pause = time.monotonic() + timeout, 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _configure(conn: sqlite3.Connection) -> None:
    """The per-connection settings of every writable connection, the writer's and readers'."""
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA secure_delete = ON")  # hard delete leaves no readable bytes
    conn.execute("PRAGMA foreign_keys = ON")


def _open_writable(path: str, timeout: float) -> sqlite3.Connection:
    conn = _connect(path, timeout=timeout)
    try:
        if path not in _MEMORY:
            _enable_wal(conn, timeout)
        _configure(conn)
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _open_read_only(path: str, timeout: float) -> sqlite3.Connection:
    """A ``mode=ro`` connection; if SQLite cannot create the ``-shm`` file a WAL-mode database
    needs (a read-only directory) and there is no ``-wal`` to read, an ``immutable=1`` one: it
    takes no locks and does not see changes that another process makes while it is open."""
    conn = _connect(_uri(path, "mode=ro"), timeout=timeout, uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        conn.close()
        if _code(exc) not in (_READONLY_CANTINIT, _READONLY_DIRECTORY) or _has_wal(path):
            raise
        conn = _connect(_uri(path, "immutable=1"), timeout=timeout, uri=True)
    with translate_errors(path, timeout=timeout):
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error:
            conn.close()
            raise
    if version < len(MIGRATIONS):
        conn.close()
        raise StoreError(
            f"{path} is read-only and has schema version {version}; this Engram needs "
            f"{len(MIGRATIONS)}: open it writable once to upgrade it"
        )
    return conn


def open_database(path: str, *, timeout: float, read_only: bool | None) -> tuple[
    sqlite3.Connection, bool
]:  # fmt: skip
    """Inspect, connect and (if writable) switch to WAL and migrate; return the connection and
    whether it is read-only. Every failure is a :class:`StoreError` naming ``path``."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise InvalidInputError("timeout must be a non-negative number of seconds")
    with translate_errors(path, timeout=timeout, doing="cannot open: "):
        try:
            new = path in _MEMORY or not os.path.exists(path) or _probe(path, timeout)
        except OSError as exc:  # not readable, a directory, ...
            raise StoreError(f"cannot open {path}: {exc.strerror or exc}") from exc
        read_only = is_read_only(path) if read_only is None else read_only
        if not read_only:
            return _open_writable(path, timeout), False
        if new:
            raise StoreError(
                f"{path} is read-only and holds no Engram database"
                if os.path.exists(path) else f"no database at {path} to open read-only"
            )  # fmt: skip
        return _open_read_only(path, timeout), True


def open_reader(path: str, *, timeout: float, read_only: bool) -> sqlite3.Connection:
    """One more connection to a file that :func:`open_database` opened (and inspected, and
    migrated): for reads, which WAL lets run beside the writer and each other. Opened as the
    first one was (``read_only``: ``mode=ro``, or ``immutable=1`` where it has to be), with the
    same timeout and pragmas; a writable file's reader is ``mode=rw`` (it never creates a file
    that was removed meanwhile) and ``query_only``. Not for an :func:`in_memory` path."""
    if in_memory(path):
        raise StoreError(f"{path!r} cannot be opened twice")
    with translate_errors(path, timeout=timeout, doing="cannot open a read connection: "):
        if read_only:
            return _open_read_only(path, timeout)
        conn = _connect(_uri(path, "mode=rw"), timeout=timeout, uri=True)
        try:
            _configure(conn)
            conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction (one snapshot) for every statement inside, ended on exit: an open
    one would keep the write-ahead log from being truncated. Inside a transaction already (the
    one connection of an in-memory store, in a write of the same thread): that one."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if conn.in_transaction:
        conn.execute("COMMIT")
