"""Checks of an Engram SQLite file from outside the process that wrote it (shared by the server
tests): integrity, and every index row in step with the records."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

__all__ = ["check_file"]

ORPHANS = {
    "record without vector": "SELECT count(*) FROM records r WHERE NOT EXISTS "
    "(SELECT 1 FROM vectors v WHERE v.rowid = r.rowid AND v.user_id = r.user_id)",
    "vector without record": "SELECT count(*) FROM vectors v WHERE NOT EXISTS "
    "(SELECT 1 FROM records r WHERE r.rowid = v.rowid)",
    "record without text row": "SELECT count(*) FROM records r WHERE kind != 'sentence' "
    "AND NOT EXISTS (SELECT 1 FROM lex_docs d WHERE d.doc = r.rowid)",
    "text row without record": "SELECT count(*) FROM lex_docs d WHERE NOT EXISTS "
    "(SELECT 1 FROM records r WHERE r.rowid = d.doc AND r.kind != 'sentence')",
    "text row of another user": "SELECT count(*) FROM lex_docs d JOIN records r ON r.rowid = d.doc "
    "JOIN lex_users u ON u.uid = d.uid WHERE u.user_id != r.user_id",
    "posting without text row": "SELECT count(*) FROM lex_postings p WHERE NOT EXISTS "
    "(SELECT 1 FROM lex_docs d WHERE d.doc = p.doc AND d.uid = p.uid)",
    "user totals off": "SELECT count(*) FROM lex_users u WHERE u.docs != (SELECT count(*) FROM "
    "lex_docs d WHERE d.uid = u.uid) OR u.tokens != (SELECT COALESCE(SUM(len), 0) FROM lex_docs d "
    "WHERE d.uid = u.uid)",
    "record without history": "SELECT count(*) FROM records r WHERE NOT EXISTS "
    "(SELECT 1 FROM history h WHERE h.record_id = r.id AND h.event = 'ADD')",
    "text in the history of a deleted record": "SELECT count(*) FROM history h WHERE "
    "(h.old_text IS NOT NULL OR h.new_text IS NOT NULL) AND NOT EXISTS "
    "(SELECT 1 FROM records r WHERE r.id = h.record_id)",
    "key without its source turn": "SELECT count(*) FROM sources s WHERE NOT EXISTS "
    "(SELECT 1 FROM records r WHERE r.id = s.source_id)",
}


def check_file(db: Path, also: Mapping[str, str] | None = None) -> dict[str, int]:
    """``PRAGMA integrity_check`` is ok and the index rows match the records (a vector for every
    record, a lexical document for every kind but sentence keys, postings, per-user totals,
    history, provenance), and every count of ``also`` is 0 too; returns the records per kind. A
    fresh connection: it recovers the write-ahead log a killed writer left."""
    checks = {**ORPHANS, **(also or {})}
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        found = {what: conn.execute(sql).fetchone()[0] for what, sql in checks.items()}
        assert found == dict.fromkeys(checks, 0)
        return dict(conn.execute("SELECT kind, count(*) FROM records GROUP BY kind").fetchall())
    finally:
        conn.close()
