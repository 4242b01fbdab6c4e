"""Row-level operations on an open connection, inside the caller's transaction: the pieces the
SQLite store's public methods are built from."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from engram.embed.base import Vectors
from engram.errors import NotFoundError
from engram.store.sqlite.rows import RECORD_COLUMNS, record_from_row, record_params, to_iso
from engram.types import VECTOR_ONLY_KINDS, MemoryRecord, RecordFilter

__all__ = [
    "bump",
    "delete_rows",
    "derived",
    "get_record",
    "has_text_row",
    "index_text",
    "insert_records",
    "where_sql",
    "write_history",
]


def where_sql(where: RecordFilter, alias: str = "") -> tuple[str, list[object]]:
    """SQL conditions for a filter; ``user_id`` is always one of them."""
    p = f"{alias}." if alias else ""
    clauses: list[str] = [f"{p}user_id = ?"]
    params: list[object] = [where.user_id]
    if where.session_id is not None:
        clauses.append(f"{p}session_id = ?")
        params.append(where.session_id)
    if where.agent_id is not None:
        clauses.append(f"{p}agent_id = ?")
        params.append(where.agent_id)
    if where.kinds:
        clauses.append(f"{p}kind IN ({', '.join('?' * len(where.kinds))})")
        params.extend(k.value for k in where.kinds)
    return " AND ".join(clauses), params


def bump(conn: sqlite3.Connection, user_id: str) -> int:
    """Move a user's generation counter on; return the new value."""
    conn.execute(
        "INSERT INTO generations (user_id, gen) VALUES (?, 1) "
        "ON CONFLICT (user_id) DO UPDATE SET gen = gen + 1",
        (user_id,),
    )
    return int(
        conn.execute("SELECT gen FROM generations WHERE user_id = ?", (user_id,)).fetchone()[0]
    )


Event = tuple[MemoryRecord, str, str | None, str | None]  # record, event, old text, new text


def write_history(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    now = to_iso(datetime.now(UTC))
    conn.executemany(
        "INSERT INTO history (record_id, user_id, event, old_text, new_text, at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(r.id, r.user_id, event, old, new, now) for r, event, old, new in events],
    )


def has_text_row(record: MemoryRecord) -> bool:
    """Whether a record gets a full-text row: every kind but the vector-only ones."""
    return record.kind not in VECTOR_ONLY_KINDS


def index_text(conn: sqlite3.Connection, rows: Sequence[tuple[int, MemoryRecord]]) -> None:
    """Give each (rowid, record) its full-text row, unless its kind is vector-only."""
    conn.executemany(
        "INSERT INTO records_fts (rowid, key_text) VALUES (?, ?)",
        [(rowid, r.key_text) for rowid, r in rows if has_text_row(r)],
    )


def _existing(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    """id -> rowid of those of ``ids`` that are stored (for any user)."""
    found: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        found.update(
            conn.execute(
                f"SELECT id, rowid FROM records WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        )
    return found


def insert_records(
    conn: sqlite3.Connection, records: Sequence[MemoryRecord], vectors: Vectors
) -> list[tuple[MemoryRecord, int]]:
    """Insert records not stored yet (an id already stored, or repeated in ``records``, is
    skipped); (record, row of ``vectors``) for each one inserted. One statement per table."""
    ids = [r.id for r in records]
    stored = _existing(conn, ids)
    first = {record_id: i for i, record_id in reversed(list(enumerate(ids)))}
    new = [(r, i) for i, r in enumerate(records) if r.id not in stored and first[r.id] == i]
    if not new:
        return []
    conn.executemany(
        f"INSERT INTO records ({RECORD_COLUMNS}) VALUES ({', '.join('?' * 16)})",
        [record_params(r) for r, _ in new],
    )
    rowids = _existing(conn, [r.id for r, _ in new])
    conn.executemany(
        "INSERT INTO vectors (rowid, user_id, vector) VALUES (?, ?, ?)",
        [(rowids[r.id], r.user_id, vectors[i].astype(np.float32).tobytes()) for r, i in new],
    )
    index_text(conn, [(rowids[r.id], r) for r, _ in new])
    conn.executemany(
        "INSERT OR IGNORE INTO sources (source_id, record_id) VALUES (?, ?)",
        [(src, r.id) for r, _ in new for src in r.provenance],
    )
    write_history(conn, [(r, "ADD", None, r.text) for r, _ in new])
    return new


def get_record(conn: sqlite3.Connection, user_id: str, record_id: str) -> MemoryRecord:
    row = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM records WHERE id = ? AND +user_id = ?",
        (record_id, user_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no record {record_id!r} for this user")
    return record_from_row(row)


def delete_rows(
    conn: sqlite3.Connection, user_id: str, ids: Sequence[str], *, merge_fts: bool = True
) -> None:
    """Hard-delete records with their vectors, full-text rows and provenance links. With
    ``merge_fts`` (needed whenever a deleted record had a full-text row) the full-text index is
    merged so that no deleted term survives in it."""
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        rowids = f"SELECT rowid FROM records WHERE +user_id = ? AND id IN ({marks})"
        params = [user_id, *chunk]
        conn.execute(f"DELETE FROM records_fts WHERE rowid IN ({rowids})", params)
        conn.execute(f"DELETE FROM vectors WHERE rowid IN ({rowids})", params)
        conn.execute(f"DELETE FROM sources WHERE record_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM sources WHERE source_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM records WHERE +user_id = ? AND id IN ({marks})", params)
    # FTS5 keeps deleted terms in old index segments until they are merged: merge now, so
    # that a hard delete leaves no readable text behind (secure_delete zeroes the rest).
    if merge_fts:
        conn.execute("INSERT INTO records_fts (records_fts) VALUES ('optimize')")


def derived(conn: sqlite3.Connection, user_id: str, record_id: str) -> list[MemoryRecord]:
    """The user's records whose provenance includes ``record_id``, oldest first."""
    rows = conn.execute(
        f"SELECT {', '.join('r.' + c.strip() for c in RECORD_COLUMNS.split(','))} "
        "FROM sources s JOIN records r ON r.id = s.record_id "
        "WHERE s.source_id = ? AND r.user_id = ? ORDER BY r.rowid",
        (record_id, user_id),
    ).fetchall()
    return [record_from_row(row) for row in rows]
