"""API keys: created by ``engram keys create``, kept hashed in a small SQLite file of their own.

A key is ``egk_<id>_<secret>``: ``id`` (8 hex digits) names it in listings and revocations, the
secret is 32 random bytes. Only the SHA-256 of the whole key is stored; a key is shown once, when
it is created. (A slow password hash buys nothing for 256 random bits: nobody can guess them, and
the file's hashes cannot be turned back into keys.) The server reads the file on every request,
so a new or revoked key takes effect at once, without a restart.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engram.errors import AuthenticationError, NotFoundError, StoreError
from engram.server.tenancy import Principal, check_pattern, check_tenant

__all__ = ["ApiKey", "KeyStore"]

PREFIX = "egk_"
_COLUMNS = "id, tenant, users, read_only, note, created_at, revoked_at"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    users TEXT NOT NULL,
    read_only INTEGER NOT NULL,
    note TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


@dataclass(frozen=True)
class ApiKey:
    """A key as listed (never its secret)."""

    id: str
    tenant: str
    users: str
    read_only: bool
    note: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _version(path: str) -> tuple[int, bytes] | None:
    """The file's inode and SQLite's file change counter (header bytes 24-27, moved on by every
    commit in the rollback-journal mode this file uses): exact, unlike a file time, whose clock
    may not move between two quick writes."""
    try:
        with open(path, "rb") as file:
            file.seek(24)
            return os.fstat(file.fileno()).st_ino, file.read(4)
    except FileNotFoundError:
        return None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _key_from_row(row: sqlite3.Row | tuple[object, ...]) -> ApiKey:
    kid, tenant, users, read_only, note, created, revoked = row
    return ApiKey(
        id=str(kid), tenant=str(tenant), users=str(users), read_only=bool(read_only),
        note=None if note is None else str(note), created_at=datetime.fromisoformat(str(created)),
        revoked_at=None if revoked is None else datetime.fromisoformat(str(revoked)),
    )  # fmt: skip


class KeyStore:
    """The API keys in ``path`` (created on first write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, bytes] | None = None  # see _version
        self._active: dict[str, ApiKey] = {}  # by hash

    def _snapshot(self) -> dict[str, ApiKey]:
        """The active keys by hash, read again whenever the file has changed."""
        seen = _version(self.path)
        with self._lock:
            if seen != self._seen or seen is None:
                active: dict[str, ApiKey] = {}
                if seen is not None:
                    with self._connect(write=False) as conn:
                        if self._exists(conn):
                            for row in conn.execute(f"SELECT hash, {_COLUMNS} FROM api_keys"):
                                active[str(row[0])] = _key_from_row(row[1:])
                self._active, self._seen = active, seen
            return self._active

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if not write and not Path(self.path).exists():
            empty = sqlite3.connect(":memory:")  # no file yet: no keys
            try:
                yield empty
            finally:
                empty.close()
            return
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the API key file {self.path!r}: {exc}") from exc
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            if write:  # execute, not executescript: that would commit the BEGIN first
                conn.execute(_SCHEMA)
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise StoreError(f"the API key file {self.path!r} failed: {exc}") from exc
        finally:
            conn.close()

    def create(
        self, tenant: str, *, users: str = "*", read_only: bool = False, note: str | None = None
    ) -> tuple[str, ApiKey]:
        """A new key for ``tenant``: (the key itself, shown only now; its listing)."""
        check_tenant(tenant)
        check_pattern(users)
        kid = secrets.token_hex(4)
        key = f"{PREFIX}{kid}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC).isoformat()
        with self._connect(write=True) as conn:
            conn.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (kid, _hash(key), tenant, users, int(read_only), note, now),
            )
        return key, self.get(kid)

    def get(self, key_id: str) -> ApiKey:
        with self._connect(write=False) as conn:
            row = self._row(conn, key_id)
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}")
        return _key_from_row(row)

    def list(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        with self._connect(write=False) as conn:
            if not self._exists(conn):
                return []
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE ? IS NULL OR tenant = ? "
                "ORDER BY created_at, id",
                (tenant, tenant),
            ).fetchall()
        return [_key_from_row(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (it stays listed, revoked); revoking it again changes nothing."""
        with self._connect(write=True) as conn:
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(), key_id),
            )
        return self.get(key_id)

    def any_active(self) -> bool:
        return any(k.active for k in self._snapshot().values())

    def any_created(self) -> bool:
        """Whether the file holds any key, active or revoked: a server that has had keys keeps
        asking for one, even when every key has been revoked."""
        return bool(self._snapshot())

    def authenticate(self, key: str) -> Principal:
        """The principal of an active key, else AuthenticationError. The file is read again
        only when it has changed since the last call (4 bytes of its header are read per call)."""
        found = self._snapshot().get(_hash(key))
        if found is None:
            raise AuthenticationError("unknown API key")
        if not found.active:
            raise AuthenticationError(f"API key {found.id} has been revoked")
        return Principal(found.tenant, found.users, found.read_only, found.id)

    @staticmethod
    def _exists(conn: sqlite3.Connection) -> bool:
        return conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'"
        ).fetchone() is not None  # fmt: skip

    def _row(self, conn: sqlite3.Connection, key_id: str) -> tuple[object, ...] | None:
        if not self._exists(conn):
            return None
        row: tuple[object, ...] | None = conn.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?",
            (key_id,),
        ).fetchone()
        return row
