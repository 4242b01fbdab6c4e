"""Numbered schema migrations for the SQLite store, applied on open (``PRAGMA user_version``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from engram.errors import StoreError
from engram.store.sqlite.upgrades import v2_user_statistics

__all__ = ["MIGRATIONS", "migrate"]

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    rowid       INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    agent_id    TEXT,
    session_id  TEXT,
    kind        TEXT NOT NULL,
    role        TEXT,
    name        TEXT,
    seq         INTEGER,
    text        TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    valid_from  TEXT,
    valid_to    TEXT,
    provenance  TEXT NOT NULL DEFAULT '[]',
    message_ids TEXT NOT NULL DEFAULT '[]',
    metadata    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX records_scope ON records (user_id, session_id, seq);
CREATE INDEX records_kind ON records (user_id, kind);
CREATE TABLE vectors (
    rowid   INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    vector  BLOB NOT NULL
);
CREATE INDEX vectors_user ON vectors (user_id);
CREATE TABLE sources (
    source_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (source_id, record_id)
) WITHOUT ROWID;
CREATE TABLE history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    event     TEXT NOT NULL,
    old_text  TEXT,
    new_text  TEXT,
    at        TEXT NOT NULL
);
CREATE INDEX history_record ON history (user_id, record_id);
CREATE TABLE generations (user_id TEXT PRIMARY KEY, gen INTEGER NOT NULL) WITHOUT ROWID;
CREATE VIRTUAL TABLE records_fts USING fts5 (
    key_text, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""

Migration = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[Migration, ...] = (_V1, v2_user_statistics)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database has not seen yet, each in its own transaction."""
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > len(MIGRATIONS):
        raise StoreError(
            f"database schema version {current} is newer than this Engram "
            f"(knows {len(MIGRATIONS)}); upgrade Engram"
        )
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            if callable(script):
                script(conn)
            else:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"schema migration {version} failed: {exc}") from exc
    return len(MIGRATIONS)
