"""The LLM layer's rows in PostgreSQL, inside the caller's transaction (as
:mod:`engram.store.sqlite.facts`): consolidations, the job queue, usage totals.

Claims across users: the candidates are read with ``engram.all_users`` (SELECT only), then
each is leased by a conditional UPDATE made as its user (``available_at <= now``, so of two
workers racing for a job, the second's UPDATE waits for the first to commit, then matches no
row): a job is leased by one worker at a time, in any number of processes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import Connection

from engram.embed.base import Vectors
from engram.errors import NotFoundError, ScopeError
from engram.store.base import FactChange, Job
from engram.store.postgres.ops import (
    as_user,
    get_record,
    insert_records,
    update_texts,
    write_history,
)
from engram.types import MemoryRecord, RecordKind, Usage

__all__ = ["add_usage", "apply_change", "claim", "enqueue", "forget_jobs", "job_stats", "release"]

_JOB = "id, user_id, session_id, turn_ids, enqueued_at, attempts, last_error"


def enqueue(conn: Connection[Any], jobs: Sequence[Job]) -> None:
    for job in jobs:
        as_user(conn, job.user_id)
        conn.execute(
            "INSERT INTO jobs (user_id, session_id, turn_ids, enqueued_at, available_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (job.user_id, job.session_id, list(job.turn_ids), job.enqueued_at, job.enqueued_at),
        )


def claim(
    conn: Connection[Any], now: datetime, lease_seconds: float, limit: int, user_id: str | None
) -> list[Job]:
    """Lease up to ``limit`` jobs available at ``now``, oldest first (the transaction has
    ``engram.all_users`` on, or acts for ``user_id``)."""
    cond, params = ("AND user_id = %s", [user_id]) if user_id is not None else ("", [])
    candidates = conn.execute(
        f"SELECT id, user_id FROM jobs WHERE available_at <= %s {cond} ORDER BY id LIMIT %s",
        [now, *params, limit],
    ).fetchall()
    until = now + timedelta(seconds=lease_seconds)
    claimed: list[Job] = []
    for job_id, owner in candidates:
        as_user(conn, owner)
        row = conn.execute(
            "UPDATE jobs SET available_at = %s, attempts = attempts + 1 "
            f"WHERE id = %s AND user_id = %s AND available_at <= %s RETURNING {_JOB}",
            (until, job_id, owner, now),
        ).fetchone()
        if row is not None:
            jid, user, session, turns, at, attempts, error = row
            claimed.append(Job(user, session, tuple(turns), at, int(jid), int(attempts), error))
    return claimed


def release(conn: Connection[Any], job_id: int, error: str, retry_at: datetime) -> None:
    row = conn.execute("SELECT user_id FROM jobs WHERE id = %s", (job_id,)).fetchone()
    if row is None:
        return  # finished (or forgotten) meanwhile: nothing to give back
    as_user(conn, str(row[0]))
    conn.execute(
        "UPDATE jobs SET available_at = %s, last_error = %s WHERE id = %s AND user_id = %s",
        (retry_at, error[:2000], job_id, row[0]),
    )


def forget_jobs(conn: Connection[Any], user_id: str, session_id: str | None) -> None:
    """Drop the user's jobs (of one session) and, for the whole user, the usage totals."""
    if session_id is None:
        conn.execute("DELETE FROM jobs WHERE user_id = %s", (user_id,))
        conn.execute("DELETE FROM llm_usage WHERE user_id = %s", (user_id,))
    else:
        conn.execute(
            "DELETE FROM jobs WHERE user_id = %s AND session_id = %s", (user_id, session_id)
        )


def add_usage(conn: Connection[Any], user_id: str, purpose: str, usage: Usage) -> None:
    if usage == Usage():
        return
    conn.execute(
        "INSERT INTO llm_usage (user_id, purpose, calls, failed, prompt_tokens, "
        "completion_tokens) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, purpose) "
        "DO UPDATE SET calls = llm_usage.calls + excluded.calls, "
        "failed = llm_usage.failed + excluded.failed, "
        "prompt_tokens = llm_usage.prompt_tokens + excluded.prompt_tokens, "
        "completion_tokens = llm_usage.completion_tokens + excluded.completion_tokens",
        (user_id, purpose, usage.calls, usage.failed, usage.prompt_tokens,
         usage.completion_tokens),
    )  # fmt: skip


def job_stats(
    conn: Connection[Any], user_id: str | None
) -> tuple[int, int, dict[str, dict[str, int]]]:
    """(queued jobs, of which failed at their last attempt, usage by purpose)."""
    cond, params = ("WHERE user_id = %s", [user_id]) if user_id else ("", [])
    row = conn.execute(f"SELECT COUNT(*), COUNT(last_error) FROM jobs {cond}", params).fetchone()
    pending, failed = (0, 0) if row is None else (int(row[0]), int(row[1]))
    rows = conn.execute(
        "SELECT purpose, SUM(calls), SUM(failed), SUM(prompt_tokens), SUM(completion_tokens) "
        f"FROM llm_usage {cond} GROUP BY purpose ORDER BY purpose",
        params,
    ).fetchall()
    usage = {str(p): Usage(int(c), int(f), int(pt), int(ct)).as_dict() for p, c, f, pt, ct in rows}
    return pending, failed, usage


def _check_facts(conn: Connection[Any], user_id: str, ids: Sequence[str]) -> None:
    for record_id in dict.fromkeys(ids):
        if get_record(conn, user_id, record_id, lock=True).kind is not RecordKind.FACT:
            raise NotFoundError(f"no fact {record_id!r} for this user")


def apply_change(conn: Connection[Any], change: FactChange, vectors: Vectors) -> list[MemoryRecord]:
    """Write one consolidation (see ``Store.consolidate``) as the change's user; the facts
    inserted and rewritten."""
    user = change.user_id
    if any(r.user_id != user or r.kind is not RecordKind.FACT for r in change.add):
        raise ScopeError("a consolidation adds facts of the user it acts for only")
    if change.job_id is not None:
        gone = conn.execute(
            "DELETE FROM jobs WHERE id = %s AND user_id = %s", (change.job_id, user)
        ).rowcount
        if not gone:
            raise NotFoundError(f"job {change.job_id} is no longer queued")
    touched = [i for i, _ in change.rewrite] + [i for i, _ in change.provenance]
    _check_facts(conn, user, touched + [r.record_id for r in change.retire])
    inserted = insert_records(conn, change.add, vectors[: len(change.add)])
    as_user(conn, user)
    rewritten = update_texts(conn, user, change.rewrite, vectors[len(change.add) :])
    for record_id, provenance in change.provenance:
        conn.execute(
            "UPDATE records SET provenance = %s WHERE id = %s AND user_id = %s",
            (list(provenance), record_id, user),
        )
        conn.execute(
            "INSERT INTO sources (source_id, record_id, user_id) "
            "SELECT s, %s, %s FROM unnest(%s::text[]) AS s ON CONFLICT DO NOTHING",
            (record_id, user, list(provenance)),
        )
    for old in change.retire:
        conn.execute(
            "UPDATE records SET valid_to = %s, expired_at = %s, superseded_by = %s "
            "WHERE id = %s AND user_id = %s",
            (old.valid_to, old.expired_at, old.superseded_by, old.record_id, user),
        )
    _notes(conn, change)
    add_usage(conn, user, change.purpose, change.usage)
    return [record for record, _ in inserted] + rewritten


def _notes(conn: Connection[Any], change: FactChange) -> None:
    """The reasons of the ADD and UPDATE events the insert and the rewrite wrote; the other
    decisions as events of their own."""
    written, others = change.split_notes()
    for note in written:
        conn.execute(
            "UPDATE history SET reason = %s WHERE hid = (SELECT MAX(hid) FROM history "
            "WHERE record_id = %s AND user_id = %s AND event = %s)",
            (note.reason, note.record_id, change.user_id, note.event),
        )
    records = {n.record_id: get_record(conn, change.user_id, n.record_id) for n in others}
    write_history(
        conn,
        [(records[n.record_id], n.event, n.old_text, n.new_text) for n in others],
        [n.reason for n in others],
    )
