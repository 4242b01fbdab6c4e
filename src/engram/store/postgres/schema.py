"""Numbered schema migrations of the PostgreSQL store, applied on open, and the vector index
made when the embedder is bound.

Every Engram table lives in one PostgreSQL schema (``engram`` unless the store is told another).
``schema_migrations`` lists the migrations applied. :func:`migrate` runs the missing ones in
order, in ONE transaction that first takes a transaction-level advisory lock
(``pg_advisory_xact_lock``) keyed by the schema's name, then reads the applied versions again:
two processes opening a new database at once apply each migration exactly once; the second
waits for the first to commit, then finds nothing to do. A migration is an SQL script or a
function of the connection; append new ones to :data:`MIGRATIONS`, never edit an applied one.

Row-level security (defense in depth; every query also filters by ``user_id`` itself): every
table that holds a user's data has ``ENABLE`` and ``FORCE ROW LEVEL SECURITY`` (so the table's
owner, the role that ran the migrations, is subject to it too) and a policy ``tenant`` that lets
a transaction read and write only the rows of ``current_setting('engram.user_id', true)``, which
the store sets per transaction with ``set_config(..., true)``. A transaction that has not set it
sees nothing. Operations across users (``stats()`` of everyone, the embedder check) set
``engram.all_users = 'on'`` instead, which the policy ``all_users_read`` honours for SELECT only:
it can count rows of every user, never change them. Superusers and roles with BYPASSRLS are not
subject to any policy: connect as a plain role (docs/postgres.md).

Vectors: ``records.embedding`` is an untyped ``vector`` column (the dimension is known only when
the embedder is bound). The HNSW indexes are partial, one per large user, made at run time
(:mod:`~engram.store.postgres.hnsw`); migration 3 drops the one index over every user's vectors
that migration 1's stores made when their embedder was bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from psycopg import Connection, errors

from engram.errors import StoreError

__all__ = [
    "MIGRATIONS",
    "RLS_TABLES",
    "Migration",
    "check_schema_name",
    "lock_schema",
    "migrate",
    "schema_version",
]

_V1_RLS_TABLES = ("records", "sources", "history", "lex_postings", "user_stats")
_V2_RLS_TABLES = ("jobs", "llm_usage")
RLS_TABLES = (*_V1_RLS_TABLES, *_V2_RLS_TABLES)
"""The tables that hold users' data, each with row-level security keyed by user_id."""

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    rid         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    user_id     TEXT COLLATE "C" NOT NULL,
    agent_id    TEXT COLLATE "C",
    session_id  TEXT COLLATE "C",
    kind        TEXT COLLATE "C" NOT NULL,
    role        TEXT,
    name        TEXT,
    seq         BIGINT,
    text        TEXT NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    valid_from  TIMESTAMPTZ,
    valid_to    TIMESTAMPTZ,
    provenance  TEXT[] NOT NULL DEFAULT '{}',
    message_ids TEXT[] NOT NULL DEFAULT '{}',
    metadata    TEXT NOT NULL DEFAULT '{}',
    embedding   vector NOT NULL,
    lex_len     INTEGER,
    lex_terms   TEXT[]
);
CREATE INDEX records_scope ON records (user_id, session_id, seq);
CREATE INDEX records_kind ON records (user_id, kind);
CREATE INDEX records_speakers ON records (user_id, name) WHERE kind = 'turn' AND name IS NOT NULL;
CREATE TABLE sources (
    source_id TEXT COLLATE "C" NOT NULL,
    record_id TEXT COLLATE "C" NOT NULL,
    user_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source_id, record_id)
);
CREATE INDEX sources_record ON sources (record_id);
CREATE TABLE history (
    hid        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id  TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C",
    event      TEXT NOT NULL,
    old_text   TEXT,
    new_text   TEXT,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX history_record ON history (user_id, record_id);
CREATE INDEX history_session ON history (user_id, session_id);
CREATE TABLE lex_postings (
    user_id TEXT COLLATE "C" NOT NULL,
    term    TEXT COLLATE "C" NOT NULL,
    rid     BIGINT NOT NULL,
    tf      INTEGER NOT NULL,
    len     INTEGER NOT NULL,
    kind    SMALLINT NOT NULL,
    PRIMARY KEY (user_id, term, rid)
);
CREATE TABLE user_stats (
    user_id TEXT COLLATE "C" PRIMARY KEY,
    docs    BIGINT NOT NULL DEFAULT 0,
    tokens  BIGINT NOT NULL DEFAULT 0,
    vectors BIGINT NOT NULL DEFAULT 0
);
"""


def _policies(conn: Connection[Any], tables: tuple[str, ...]) -> None:
    mine = "user_id = current_setting('engram.user_id', true)"
    everyone = "current_setting('engram.all_users', true) = 'on'"
    for table in tables:
        conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY tenant ON {table} USING ({mine}) WITH CHECK ({mine})")
        conn.execute(f"CREATE POLICY all_users_read ON {table} FOR SELECT USING ({everyone})")


def _v1(conn: Connection[Any]) -> None:
    """Migration 1: the tables, their indexes and the row-level security policies."""
    conn.execute(_V1)
    _policies(conn, _V1_RLS_TABLES)


# The LLM layer (as SQLite's migration 3): facts' second clock and successor, the reason of a
# consolidation decision, the queue of deferred extractions (claimable from available_at) and
# LLM usage totals per user and purpose.
_V2 = """
ALTER TABLE records ADD COLUMN expired_at TIMESTAMPTZ;
ALTER TABLE records ADD COLUMN superseded_by TEXT COLLATE "C";
ALTER TABLE history ADD COLUMN reason TEXT;
CREATE TABLE jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL,
    session_id   TEXT COLLATE "C" NOT NULL,
    turn_ids     TEXT[] NOT NULL,
    enqueued_at  TIMESTAMPTZ NOT NULL,
    available_at TIMESTAMPTZ NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX jobs_available ON jobs (available_at, id);
CREATE INDEX jobs_user ON jobs (user_id, session_id);
CREATE TABLE llm_usage (
    user_id           TEXT COLLATE "C" NOT NULL,
    purpose           TEXT NOT NULL,
    calls             BIGINT NOT NULL DEFAULT 0,
    failed            BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, purpose)
);
"""


def _v2(conn: Connection[Any]) -> None:
    """Migration 2: the LLM layer's columns and tables, with their policies."""
    conn.execute(_V2)
    _policies(conn, _V2_RLS_TABLES)


Migration = str | Callable[[Connection[Any]], None]

# Migration 3: the HNSW index over every user's vectors goes (one per large user replaces it)
_V3 = "DROP INDEX IF EXISTS records_hnsw"

MIGRATIONS: tuple[Migration, ...] = (_v1, _v2, _V3)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(name: str) -> str:
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise StoreError(f"schema name {name!r}: lower-case letters, digits and _ only")
    return name


def schema_version(conn: Connection[Any], schema: str) -> int:
    """The highest migration applied (0: none, or no Engram schema)."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_migrations",)).fetchone()
    if row is None or row[0] is None:
        return 0
    found = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_migrations")
    return int(found.fetchone()[0])  # type: ignore[index]


def _ensure_extension(conn: Connection[Any]) -> None:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
        return
    try:
        with conn.transaction():  # a savepoint: the error below must not end the migration
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except errors.InsufficientPrivilege as exc:
        raise StoreError(
            "the pgvector extension is not installed in this database, and this role may not "
            "install it: run CREATE EXTENSION vector as a superuser once (docs/postgres.md)"
        ) from exc


def lock_schema(conn: Connection[Any], schema: str) -> None:
    """Take the schema's advisory lock until the transaction ends (migrations, the index)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"engram:{schema}",))


def migrate(conn: Connection[Any], schema: str) -> int:
    """Bring the schema up to date (on an autocommit connection); return its version.
    Nothing is written, and no lock taken, when it is up to date."""
    version = schema_version(conn, schema)
    if version > len(MIGRATIONS):
        raise StoreError(
            f"schema {schema!r} has version {version}, newer than this Engram "
            f"(knows {len(MIGRATIONS)}); upgrade Engram"
        )
    if version == len(MIGRATIONS):
        return version
    with conn.transaction():
        lock_schema(conn, schema)
        _ensure_extension(conn)
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        ext = conn.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        path = ", ".join(dict.fromkeys([schema, "public" if ext is None else str(ext[0])]))
        conn.execute("SELECT set_config('search_path', %s, true)", (path,))  # the new tables'
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version = schema_version(conn, schema)  # again, under the lock
        for number in range(version + 1, len(MIGRATIONS) + 1):
            step = MIGRATIONS[number - 1]
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
            conn.execute(f"INSERT INTO {schema}.schema_migrations (version) VALUES (%s)", (number,))
    return len(MIGRATIONS)
