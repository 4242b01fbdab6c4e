"""The LLM layer's rows, inside the caller's transaction: consolidations of facts, the queue of
deferred extractions, and LLM usage totals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from engram.embed.base import Vectors
from engram.errors import NotFoundError, ScopeError
from engram.store.base import FactChange, Job
from engram.store.sqlite.ops import get_record, insert_records, update_texts, write_history
from engram.store.sqlite.rows import from_iso, to_iso
from engram.types import MemoryRecord, RecordKind, Usage

__all__ = [
    "add_usage",
    "apply_change",
    "claim",
    "enqueue",
    "forget_jobs",
    "release",
]


def enqueue(conn: sqlite3.Connection, jobs: Sequence[Job]) -> None:
    conn.executemany(
        "INSERT INTO jobs (user_id, session_id, turn_ids, enqueued_at, available_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (j.user_id, j.session_id, json.dumps(list(j.turn_ids)),
             to_iso(j.enqueued_at), to_iso(j.enqueued_at))
            for j in jobs
        ],
    )  # fmt: skip


def claim(
    conn: sqlite3.Connection, now: datetime, lease_seconds: float, limit: int, user_id: str | None
) -> list[Job]:
    """Lease up to ``limit`` jobs available at ``now``, oldest first."""
    cond, params = ("AND user_id = ?", [user_id]) if user_id is not None else ("", [])
    rows = conn.execute(
        "SELECT id, user_id, session_id, turn_ids, enqueued_at, attempts, last_error FROM jobs "
        f"WHERE available_at <= ? {cond} ORDER BY id LIMIT ?",
        [to_iso(now), *params, limit],
    ).fetchall()
    until = to_iso(now + timedelta(seconds=lease_seconds))
    conn.executemany(
        "UPDATE jobs SET available_at = ?, attempts = attempts + 1 WHERE id = ?",
        [(until, row[0]) for row in rows],
    )
    return [
        Job(
            user_id=user,
            session_id=session,
            turn_ids=tuple(json.loads(turns)),
            enqueued_at=from_iso(at) or now,
            id=int(jid),
            attempts=int(attempts) + 1,
            last_error=error,
        )
        for jid, user, session, turns, at, attempts, error in rows
    ]


def release(conn: sqlite3.Connection, job_id: int, error: str, retry_at: datetime) -> None:
    conn.execute(
        "UPDATE jobs SET available_at = ?, last_error = ? WHERE id = ?",
        (to_iso(retry_at), error[:2000], job_id),
    )


def forget_jobs(conn: sqlite3.Connection, user_id: str, session_id: str | None) -> None:
    """Drop the user's jobs (of one session) and, for the whole user, the usage totals."""
    if session_id is None:
        conn.execute("DELETE FROM jobs WHERE user_id = ?", (user_id,))
        conn.execute("DELETE FROM llm_usage WHERE user_id = ?", (user_id,))
    else:
        conn.execute("DELETE FROM jobs WHERE user_id = ? AND session_id = ?", (user_id, session_id))


def add_usage(conn: sqlite3.Connection, user_id: str, purpose: str, usage: Usage) -> None:
    if usage == Usage():
        return
    conn.execute(
        "INSERT INTO llm_usage (user_id, purpose, calls, failed, prompt_tokens, "
        "completion_tokens) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, purpose) DO UPDATE "
        "SET calls = calls + excluded.calls, failed = failed + excluded.failed, "
        "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
        "completion_tokens = completion_tokens + excluded.completion_tokens",
        (user_id, purpose, usage.calls, usage.failed, usage.prompt_tokens,
         usage.completion_tokens),
    )  # fmt: skip


def _facts(conn: sqlite3.Connection, user_id: str, ids: Sequence[str]) -> dict[str, MemoryRecord]:
    found = {i: get_record(conn, user_id, i) for i in dict.fromkeys(ids)}
    for record in found.values():
        if record.kind is not RecordKind.FACT:
            raise NotFoundError(f"no fact {record.id!r} for this user")
    return found


def apply_change(
    conn: sqlite3.Connection, change: FactChange, vectors: Vectors
) -> tuple[list[tuple[MemoryRecord, int]], list[MemoryRecord], list[tuple[int, str]]]:
    """Write one consolidation (see ``Store.consolidate``); (inserted facts with their vector
    rows, rewritten facts, (rowid, id) of the rewritten)."""
    user = change.user_id
    if any(r.user_id != user or r.kind is not RecordKind.FACT for r in change.add):
        raise ScopeError("a consolidation adds facts of the user it acts for only")
    if change.job_id is not None:
        gone = conn.execute(
            "DELETE FROM jobs WHERE id = ? AND user_id = ?", (change.job_id, user)
        ).rowcount
        if not gone:
            raise NotFoundError(f"job {change.job_id} is no longer queued")
    touched = [i for i, _ in change.rewrite] + [i for i, _ in change.provenance]
    _facts(conn, user, touched + [r.record_id for r in change.retire])
    inserted = insert_records(conn, change.add, vectors[: len(change.add)])
    rewritten, changed = update_texts(conn, user, change.rewrite, vectors[len(change.add) :])
    for record_id, provenance in change.provenance:
        conn.execute(
            "UPDATE records SET provenance = ? WHERE id = ?",
            (json.dumps(list(provenance)), record_id),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO sources (source_id, record_id) VALUES (?, ?)",
            [(source, record_id) for source in provenance],
        )
    for old in change.retire:
        conn.execute(
            "UPDATE records SET valid_to = ?, expired_at = ?, superseded_by = ? WHERE id = ?",
            (to_iso(old.valid_to), to_iso(old.expired_at), old.superseded_by, old.record_id),
        )
    _notes(conn, change)
    add_usage(conn, user, change.purpose, change.usage)
    return inserted, rewritten, changed


def _notes(conn: sqlite3.Connection, change: FactChange) -> None:
    """The reasons of the ADD and UPDATE events that the insert and the rewrite wrote; the
    other decisions (MERGE, NOOP, SUPERSEDE) as events of their own."""
    written, others = change.split_notes()
    for note in written:
        conn.execute(
            "UPDATE history SET reason = ? WHERE id = (SELECT MAX(id) FROM history "
            "WHERE record_id = ? AND user_id = ? AND event = ?)",
            (note.reason, note.record_id, change.user_id, note.event),
        )
    records: Mapping[str, MemoryRecord] = {
        n.record_id: get_record(conn, change.user_id, n.record_id) for n in others
    }
    write_history(
        conn,
        [(records[n.record_id], n.event, n.old_text, n.new_text) for n in others],
        [n.reason for n in others],
    )
