"""Numbered schema migrations for the SQLite store, applied on open (``PRAGMA user_version``),
and the mark that makes a file Engram's (``PRAGMA application_id``).

A migration is an SQL script or a function of the connection; :func:`migrate` runs every one the
database has not seen, in order, in one transaction it opens with the write lock held, so two
processes opening a new file at once cannot both create the tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from engram.errors import StoreError
from engram.store.sqlite.upgrades import v2_user_statistics

__all__ = ["APPLICATION_ID", "MIGRATIONS", "Migration", "migrate", "not_engrams"]

APPLICATION_ID = 0x456E6772  # "Engr": set with migration 1; files of earlier versions carry 0

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

# Version 3: the LLM layer. Facts' second clock (expired_at) and successor; the reason of a
# consolidation decision in the history; the queue of deferred extractions (a job is claimable
# from available_at: a claim moves it on by the lease, a failure to the retry time); LLM usage
# totals per user and purpose.
_V3 = """
ALTER TABLE records ADD COLUMN expired_at TEXT;
ALTER TABLE records ADD COLUMN superseded_by TEXT;
ALTER TABLE history ADD COLUMN reason TEXT;
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    turn_ids     TEXT NOT NULL,
    enqueued_at  TEXT NOT NULL,
    available_at TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX jobs_available ON jobs (available_at, id);
CREATE INDEX jobs_user ON jobs (user_id, session_id);
CREATE TABLE llm_usage (
    user_id           TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    calls             INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, purpose)
) WITHOUT ROWID;
CREATE INDEX records_superseded ON records (superseded_by) WHERE superseded_by IS NOT NULL;
"""

# Version 4: a user's generation row also says when the user's records last changed other than
# by an insert (``reshaped``: the generation of that write), so that a process whose cached
# matrix is older than another process's inserts can read just the new rows instead of every
# vector again (store/sqlite/follow.py). Rows written before it count as changed at their
# generation: a cache made before the migration is rebuilt.
_V4 = """
ALTER TABLE generations ADD COLUMN reshaped INTEGER NOT NULL DEFAULT 0;
UPDATE generations SET reshaped = gen;
"""

Migration = str | Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (_V1, v2_user_statistics, _V3, _V4)


def not_engrams(path: str, tables: list[str], application_id: int, version: int) -> StoreError:
    """The error for an SQLite database that another program made."""
    listed = ", ".join(tables[:8]) + (f", ... ({len(tables)} in all)" if len(tables) > 8 else "")
    what = [f"tables: {listed}" if tables else "no tables"]
    if application_id:
        what.insert(0, f"application_id {application_id:#x}")
    if version and not tables:
        what.append(f"user_version {version}")
    return StoreError(
        f"{path} is an SQLite database that is not Engram's ({', '.join(what)}); "
        "Engram leaves it untouched"
    )


def _marks(conn: sqlite3.Connection) -> tuple[int, int]:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    return version, int(conn.execute("PRAGMA application_id").fetchone()[0])


def _check_version(path: str, version: int) -> None:
    if version > len(MIGRATIONS):
        raise StoreError(
            f"{path} has schema version {version}, newer than this Engram "
            f"(knows {len(MIGRATIONS)}); upgrade Engram"
        )


def _run(conn: sqlite3.Connection, step: Migration) -> None:
    if callable(step):
        step(conn)
        return
    statement = ""
    for line in step.splitlines(keepends=True):  # whole statements, even with ";" inside
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise sqlite3.ProgrammingError(f"incomplete statement in migration: {statement!r}")


def migrate(conn: sqlite3.Connection, path: str = "the database") -> int:
    """Bring the schema up to date and mark the file as Engram's; return the schema version.

    Nothing is written when there is nothing to do. Otherwise the write lock is taken first
    (``BEGIN IMMEDIATE``, waiting up to the connection's busy timeout for another opener) and the
    version read again under it, so each missing migration runs exactly once. Version 0 must be
    an empty database: Engram does not add its tables to another program's file.
    """
    version, application_id = _marks(conn)
    _check_version(path, version)
    if version == len(MIGRATIONS) and application_id == APPLICATION_ID:
        return version
    conn.execute("BEGIN IMMEDIATE")  # lock errors propagate: the caller names the file
    try:
        version, application_id = _marks(conn)
        _check_version(path, version)
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
        if version == 0 and tables:
            raise not_engrams(path, tables, application_id, version)
        for number in range(version + 1, len(MIGRATIONS) + 1):
            try:
                _run(conn, MIGRATIONS[number - 1])
                conn.execute(f"PRAGMA user_version = {number}")
            except sqlite3.Error as exc:
                raise StoreError(f"{path}: schema migration {number} failed: {exc}") from exc
        if application_id != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
