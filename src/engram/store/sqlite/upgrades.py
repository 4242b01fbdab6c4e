"""Migrations that need more than an SQL script, run inside the migration's transaction."""

from __future__ import annotations

import sqlite3

from engram.store.sqlite import lexical
from engram.store.sqlite.rows import V1_COLUMNS, record_from_row

__all__ = ["v2_user_statistics"]

_V2 = (
    lexical.SCHEMA
    + """
CREATE INDEX sources_record ON sources (record_id);
CREATE INDEX records_speakers ON records (user_id, name) WHERE kind = 'turn' AND name IS NOT NULL;
ALTER TABLE history ADD COLUMN session_id TEXT;
UPDATE history SET session_id = (
    SELECT r.session_id FROM records r
    WHERE r.id = history.record_id AND r.user_id = history.user_id
);
UPDATE history SET old_text = NULL, new_text = NULL WHERE NOT EXISTS (
    SELECT 1 FROM records r WHERE r.id = history.record_id AND r.user_id = history.user_id
);
CREATE INDEX history_session ON history (user_id, session_id);
INSERT INTO meta (key, value) VALUES ('clock', (SELECT COALESCE(MAX(gen), 0) FROM generations));
"""
)


def v2_user_statistics(conn: sqlite3.Connection) -> None:
    """Migration 2.

    - The lexical index moves from FTS5 (global BM25 statistics, deletes that leave terms in old
      segments) to per-user tables (:mod:`engram.store.sqlite.lexical`), rebuilt here from the
      stored records; ``records_fts`` is dropped.
    - History rows get the record's session, so that forgetting a session also removes the
      history of its records deleted earlier; the texts of records deleted before this version
      are blanked, as a hard delete now does.
    - Generations are drawn from one store-wide clock.
    - ``sources`` gets an index on ``record_id`` (a delete looked it up with a full scan), and
      named turns an index for the speaker names (read on a user's first search: 3.6 s of a
      7 s cold first search at 200k turns read every turn row).
    """
    for statement in _V2.split(";"):
        if statement.strip():
            conn.execute(statement)
    last = 0
    while True:
        rows = conn.execute(
            f"SELECT rowid, {V1_COLUMNS} FROM records WHERE rowid > ? ORDER BY rowid LIMIT 2000",
            (last,),
        ).fetchall()
        if not rows:
            break
        lexical.index_docs(conn, [(int(row[0]), record_from_row(row[1:])) for row in rows])
        last = int(rows[-1][0])
    conn.execute("DROP TABLE records_fts")
