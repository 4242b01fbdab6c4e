"""Row-level operations on an open connection, inside the caller's transaction: the pieces the
SQLite store's public methods are built from."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from engram.embed.base import Vectors
from engram.errors import ConfigurationError, ConflictError, NotFoundError
from engram.store.base import SessionTail, Sources
from engram.store.sqlite import lexical
from engram.store.sqlite.rows import (
    RECORD_COLUMNS,
    owned_rows,
    record_from_row,
    record_params,
    to_iso,
    where_sql,
)
from engram.types import MemoryRecord, RecordFilter, StoreStats

__all__ = [
    "Generation",
    "bump",
    "check_embedder",
    "check_sources",
    "check_tail",
    "delete_rows",
    "derived",
    "forget_session",
    "forget_user",
    "generation",
    "get_record",
    "insert_records",
    "store_stats",
    "stored_ids",
    "update_texts",
    "write_history",
]


def bump(conn: sqlite3.Connection, user_id: str, *, insert_only: bool) -> tuple[int, int]:
    """Move a user's generation on; return (before, after). Generations are drawn from one
    store-wide clock (``meta.clock``), so a user forgotten (generation row removed, generation 0
    again) and written to later never gets a generation that a cache made before may hold.
    A write that did more than insert records (``insert_only`` False: an update, a delete, a
    consolidation) also marks the user ``reshaped`` at the new generation, and so does the
    first write of a user (a forgotten user's records went without a generation row left)."""
    row = conn.execute("SELECT gen FROM generations WHERE user_id = ?", (user_id,)).fetchone()
    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'clock'")
    (gen,) = conn.execute("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'clock'").fetchone()
    conn.execute(
        "INSERT INTO generations (user_id, gen, reshaped) VALUES (?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET gen = excluded.gen, "
        "reshaped = CASE WHEN ? THEN reshaped ELSE excluded.gen END",
        (user_id, gen, gen, insert_only),
    )
    return (0 if row is None else int(row[0])), int(gen)


class Generation(NamedTuple):
    """Where a user's records are: ``gen`` moves on with every write; ``reshaped`` is the
    ``gen`` of the last write that did more than insert. Between two generations ``a < b`` of
    a user, only inserts happened if ``reshaped <= a`` (read at ``b``)."""

    gen: int
    reshaped: int

    def only_inserts_since(self, before: int) -> bool:
        return self.reshaped <= before


def generation(conn: sqlite3.Connection, user_id: str) -> Generation:
    """The user's generation, and that of their last write that was not only inserts (0, 0:
    never written, or forgotten)."""
    row = conn.execute(
        "SELECT gen, reshaped FROM generations WHERE user_id = ?", (user_id,)
    ).fetchone()
    return Generation(0, 0) if row is None else Generation(int(row[0]), int(row[1]))


Event = tuple[MemoryRecord, str, str | None, str | None]  # record, event, old text, new text


def write_history(
    conn: sqlite3.Connection, events: Sequence[Event], reasons: Sequence[str | None] = ()
) -> None:
    """Append events to the history; ``reasons[i]`` (if given) says why ``events[i]``."""
    now = to_iso(datetime.now(UTC))
    why = list(reasons) + [None] * (len(events) - len(reasons))
    conn.executemany(
        "INSERT INTO history "
        "(record_id, user_id, session_id, event, old_text, new_text, at, reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (r.id, r.user_id, r.session_id, event, old, new, now, reason)
            for (r, event, old, new), reason in zip(events, why, strict=True)
        ],
    )


def stored_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
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
    stored = stored_ids(conn, ids)
    first = {record_id: i for i, record_id in reversed(list(enumerate(ids)))}
    new = [(r, i) for i, r in enumerate(records) if r.id not in stored and first[r.id] == i]
    if not new:
        return []
    conn.executemany(
        f"INSERT INTO records ({RECORD_COLUMNS}) VALUES ({', '.join('?' * 18)})",
        [record_params(r) for r, _ in new],
    )
    rowids = stored_ids(conn, [r.id for r, _ in new])
    conn.executemany(
        "INSERT INTO vectors (rowid, user_id, vector) VALUES (?, ?, ?)",
        [(rowids[r.id], r.user_id, vectors[i].astype(np.float32).tobytes()) for r, i in new],
    )
    lexical.index_docs(conn, [(rowids[r.id], r) for r, _ in new])
    conn.executemany(
        "INSERT OR IGNORE INTO sources (source_id, record_id) VALUES (?, ?)",
        [(src, r.id) for r, _ in new for src in r.provenance],
    )
    write_history(conn, [(r, "ADD", None, r.text) for r, _ in new])
    return new


def update_texts(
    conn: sqlite3.Connection, user_id: str, texts: Sequence[tuple[str, str]], vectors: Vectors
) -> tuple[list[MemoryRecord], list[tuple[int, str]]]:
    """Give the user's records (id, text) their new texts and vectors, reindexed and with an
    UPDATE event each; the updated records and their (rowid, id)."""
    updated, changed = [], []
    for (record_id, text), vector in zip(texts, vectors, strict=True):
        old = get_record(conn, user_id, record_id)
        conn.execute("UPDATE records SET text = ? WHERE id = ?", (text, record_id))
        new = get_record(conn, user_id, record_id)
        (rowid,) = conn.execute("SELECT rowid FROM records WHERE id = ?", (record_id,)).fetchone()
        conn.execute(
            "UPDATE vectors SET vector = ? WHERE rowid = ?",
            (vector.astype(np.float32).tobytes(), rowid),
        )
        lexical.unindex_docs(conn, [rowid])
        lexical.index_docs(conn, [(rowid, new)])
        write_history(conn, [(new, "UPDATE", old.text, text)])
        updated.append(new)
        changed.append((int(rowid), record_id))
    return updated, changed


def get_record(conn: sqlite3.Connection, user_id: str, record_id: str) -> MemoryRecord:
    row = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM records WHERE id = ? AND +user_id = ?",
        (record_id, user_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no record {record_id!r} for this user")
    return record_from_row(row)


def delete_rows(conn: sqlite3.Connection, user_id: str, ids: Sequence[str]) -> list[int]:
    """Hard-delete the user's records ``ids`` with their vectors, lexical index rows and
    provenance links, and blank the texts in their history (the events stay: what happened and
    when, not what was said); return the rowids deleted. ``secure_delete`` zeroes the freed
    bytes in the database file; the write-ahead log is the caller's to truncate."""
    deleted: list[int] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ", ".join("?" * len(chunk))
        params = [user_id, *chunk]
        rowids = [
            int(row[0])
            for row in conn.execute(
                f"SELECT rowid FROM records WHERE +user_id = ? AND id IN ({marks})", params
            )
        ]
        lexical.unindex_docs(conn, rowids)
        conn.executemany("DELETE FROM vectors WHERE rowid = ?", [(r,) for r in rowids])
        conn.execute(f"DELETE FROM sources WHERE record_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM sources WHERE source_id IN ({marks})", chunk)
        conn.executemany("DELETE FROM records WHERE rowid = ?", [(r,) for r in rowids])
        conn.execute(
            "UPDATE history SET old_text = NULL, new_text = NULL "
            f"WHERE user_id = ? AND record_id IN ({marks})",
            params,
        )
        deleted.extend(rowids)
    return deleted


def forget_user(conn: sqlite3.Connection, user_id: str) -> int:
    """Hard-delete everything that names the user, set by set; return the number of records."""
    lexical.drop_user(conn, user_id)
    mine = "(SELECT id FROM records WHERE user_id = ?)"
    conn.execute(f"DELETE FROM sources WHERE record_id IN {mine}", (user_id,))
    conn.execute(f"DELETE FROM sources WHERE source_id IN {mine}", (user_id,))
    conn.execute("DELETE FROM vectors WHERE user_id = ?", (user_id,))
    count = conn.execute("DELETE FROM records WHERE user_id = ?", (user_id,)).rowcount
    for table in ("history", "generations"):
        conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
    return int(count)


def forget_session(
    conn: sqlite3.Connection, user_id: str, session_id: str
) -> tuple[list[str], list[int]]:
    """Hard-delete the records of one session of the user (as :func:`delete_rows`) and the
    session's history rows; return the ids and rowids deleted."""
    where, params = where_sql(RecordFilter(user_id, session_id=session_id))
    ids = [str(r[0]) for r in conn.execute(f"SELECT id FROM records WHERE {where}", params)]
    rowids = delete_rows(conn, user_id, ids)
    conn.execute("DELETE FROM history WHERE user_id = ? AND session_id = ?", (user_id, session_id))
    return ids, rowids


def derived(conn: sqlite3.Connection, user_id: str, record_id: str) -> list[MemoryRecord]:
    """The user's records whose provenance includes ``record_id``, oldest first."""
    rows = conn.execute(
        f"SELECT {', '.join('r.' + c.strip() for c in RECORD_COLUMNS.split(','))} "
        "FROM sources s JOIN records r ON r.id = s.record_id "
        "WHERE s.source_id = ? AND r.user_id = ? ORDER BY r.rowid",
        (record_id, user_id),
    ).fetchall()
    return [record_from_row(row) for row in rows]


def check_tail(conn: sqlite3.Connection, expect: SessionTail, ids: Sequence[str]) -> None:
    """Raise ``ConflictError`` unless the session's last turns are still ``expect.turns`` (ids
    and texts) and none of ``ids`` is stored (inside the caller's write transaction)."""
    rows = conn.execute(
        "SELECT id, text FROM records WHERE user_id = ? AND session_id = ? AND kind = 'turn' "
        "ORDER BY seq DESC, rowid DESC LIMIT ?",
        (expect.user_id, expect.session_id, max(1, len(expect.turns))),
    ).fetchall()
    if tuple((str(i), str(t)) for i, t in reversed(rows)) != expect.turns:
        raise ConflictError(f"session {expect.session_id!r} changed while the add was prepared")
    if stored_ids(conn, ids):
        raise ConflictError("records of this add were stored meanwhile")


def check_sources(conn: sqlite3.Connection, user_id: str, record_id: str, expect: Sources) -> None:
    """Raise ``ConflictError`` unless the records an update rebuilds keys from still have the
    texts it read, and the keys derived from ``record_id`` are still the ones it read."""
    texts = dict(owned_rows(conn, user_id, "id, text", "id", list(expect.texts)))
    keys = frozenset(r.id for r in derived(conn, user_id, record_id))
    if texts != dict(expect.texts) or keys != expect.derived:
        raise ConflictError(f"record {record_id!r} or its neighbours changed meanwhile")


def check_embedder(conn: sqlite3.Connection, path: str, name: str, dim: int) -> bool:
    """Whether ``name`` and ``dim`` are what the store recorded; raise if they conflict."""
    stored = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('embedder', 'dim')"))
    stored_name, stored_dim = stored.get("embedder"), stored.get("dim")
    if stored_dim is not None and int(stored_dim) != dim:
        raise ConfigurationError(
            f"{path} holds {stored_dim}-dimensional vectors from {stored_name!r}; "
            f"embedder {name!r} makes {dim}-dimensional ones"
        )
    vectors = conn.execute("SELECT 1 FROM vectors LIMIT 1").fetchone()
    if stored_name is not None and stored_name != name and vectors:
        raise ConfigurationError(f"{path} was indexed with embedder {stored_name!r}, not {name!r}")
    return stored_name == name and stored_dim == str(dim)


def store_stats(conn: sqlite3.Connection, user_id: str | None, dim: int | None) -> StoreStats:
    cond, params = ("WHERE user_id = ?", [user_id]) if user_id else ("", [])
    kinds = dict(conn.execute(f"SELECT kind, COUNT(*) FROM records {cond} GROUP BY kind", params))
    (users,) = conn.execute(
        f"SELECT COUNT(DISTINCT user_id) FROM records {cond}", params
    ).fetchone()
    (sessions,) = conn.execute(
        f"SELECT COUNT(*) FROM (SELECT DISTINCT user_id, session_id FROM records {cond})", params
    ).fetchone()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    row = conn.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
    jobs_cond = "WHERE user_id = ?" if user_id else ""
    pending, failed = conn.execute(
        f"SELECT COUNT(*), COUNT(last_error) FROM jobs {jobs_cond}", params
    ).fetchone()
    usage = conn.execute(
        "SELECT purpose, SUM(calls), SUM(failed), SUM(prompt_tokens), SUM(completion_tokens) "
        f"FROM llm_usage {jobs_cond} GROUP BY purpose ORDER BY purpose",
        params,
    ).fetchall()
    return StoreStats(
        records=kinds, users=users, sessions=sessions, size_bytes=pages * page_size,
        embedder=None if row is None else str(row[0]), dim=dim,
        pending_jobs=int(pending), failed_jobs=int(failed),
        llm={
            p: {"calls": int(c), "failed": int(f), "prompt_tokens": int(pt),
                "completion_tokens": int(ct)}
            for p, c, f, pt, ct in usage
        },
    )  # fmt: skip
