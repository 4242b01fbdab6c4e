"""Conversion between MemoryRecord objects and PostgreSQL rows, and the two ways of selecting
records: by a filter (``where_sql``) and by key (``owned_rows``). The SQL mirrors
:mod:`engram.store.sqlite.rows`; ``rid`` (an identity column) plays SQLite's ``rowid``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import Connection

from engram.types import HistoryEvent, KeyRef, MemoryRecord, RecordFilter, RecordKind

__all__ = [
    "AFTER_SQL",
    "HISTORY_COLUMNS",
    "LIST_ORDER",
    "RECORD_COLUMNS",
    "REF_COLUMNS",
    "after_params",
    "history_from_row",
    "owned_rows",
    "record_from_row",
    "record_params",
    "ref_from_row",
    "where_sql",
]

RECORD_COLUMNS = (
    'id, user_id, agent_id, session_id, kind, role, name, seq, text, "timestamp", created_at, '
    "valid_from, valid_to, provenance, message_ids, metadata, expired_at, superseded_by"
)
REF_COLUMNS = 'id, kind, provenance, name, "timestamp", text, valid_from, valid_to, expired_at'
HISTORY_COLUMNS = "hid, record_id, user_id, event, old_text, new_text, at, reason"
_KINDS = {kind.value: kind for kind in RecordKind}


_ZERO = timedelta(0)


def _required(value: datetime) -> datetime:
    """A timestamptz as a UTC datetime (the connections' TimeZone is UTC: a cheap replace)."""
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.utcoffset() == _ZERO else value.astimezone(UTC)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else _required(value)


def record_params(record: MemoryRecord) -> tuple[Any, ...]:
    """The values for ``RECORD_COLUMNS``, in order (metadata as JSON text, as SQLite keeps it:
    it reads back exactly as written)."""
    return (
        record.id, record.user_id, record.agent_id, record.session_id, record.kind.value,
        record.role, record.name, record.seq, record.text, record.timestamp, record.created_at,
        record.valid_from, record.valid_to, list(record.provenance), list(record.message_ids),
        json.dumps(dict(record.metadata), ensure_ascii=False), record.expired_at,
        record.superseded_by,
    )  # fmt: skip


def record_from_row(row: Sequence[Any]) -> MemoryRecord:
    (rid, user_id, agent_id, session_id, kind, role, name, seq, text, timestamp, created_at,
     valid_from, valid_to, provenance, message_ids, metadata, expired_at,
     superseded_by) = tuple(row)  # fmt: skip
    return MemoryRecord(
        id=rid, kind=_KINDS[kind], text=text, user_id=user_id, session_id=session_id,
        agent_id=agent_id, role=role, name=name, seq=seq, timestamp=_required(timestamp),
        created_at=_required(created_at), provenance=tuple(provenance),
        message_ids=tuple(message_ids), valid_from=_utc(valid_from), valid_to=_utc(valid_to),
        metadata={} if metadata == "{}" else json.loads(metadata),
        expired_at=_utc(expired_at), superseded_by=superseded_by,
    )  # fmt: skip


def history_from_row(row: Sequence[Any]) -> HistoryEvent:
    hid, record_id, user_id, event, old_text, new_text, at, reason = row
    return HistoryEvent(hid, record_id, user_id, event, old_text, new_text, _required(at), reason)


def ref_from_row(row: Sequence[Any]) -> KeyRef:
    rid, kind, provenance, name, timestamp, text, valid_from, valid_to, expired_at = row
    return KeyRef(
        rid, _KINDS[kind], tuple(provenance), name, _required(timestamp), text,
        _utc(valid_from), _utc(valid_to), _utc(expired_at),
    )  # fmt: skip


def where_sql(where: RecordFilter, alias: str = "") -> tuple[str, list[object]]:
    """SQL conditions for a filter; ``user_id`` is always one of them (row-level security
    checks it again: see :mod:`engram.store.postgres.schema`)."""
    p = f"{alias}." if alias else ""
    clauses: list[str] = [f"{p}user_id = %s"]
    params: list[object] = [where.user_id]
    if where.session_id is not None:
        clauses.append(f"{p}session_id = %s")
        params.append(where.session_id)
    if where.agent_id is not None:
        clauses.append(f"{p}agent_id = %s")
        params.append(where.agent_id)
    if where.kinds:
        clauses.append(f"{p}kind = ANY(%s)")
        params.append([k.value for k in where.kinds])
    if where.as_of is not None:  # as engram.types.valid_at
        clauses.append(
            f"(CASE WHEN {p}kind = 'fact' THEN COALESCE({p}valid_from, {p}\"timestamp\") <= %s "
            f'AND ({p}valid_to IS NULL OR {p}valid_to > %s) ELSE {p}"timestamp" <= %s END)'
        )
        params.extend([where.as_of] * 3)
    return " AND ".join(clauses), params


def owned_rows(
    conn: Connection[Any], user_id: str, columns: str, key: str, values: Sequence[object]
) -> list[tuple[Any, ...]]:
    """``columns`` of the user's records whose ``key`` (``id`` or ``rid``) is among ``values``,
    in no particular order."""
    if not values:
        return []
    cast = "bigint[]" if key == "rid" else "text[]"
    return conn.execute(
        f"SELECT {columns} FROM records WHERE user_id = %s AND {key} = ANY(%s::{cast})",
        (user_id, list(values)),
    ).fetchall()


# Keyset pagination in the order of list(): (session_id, seq) ascending, kind descending, rid;
# as engram.store.sqlite.rows.AFTER_SQL (NULLs first, as '' and -1; the "C" collation of the
# columns compares bytes, as SQLite does).
AFTER_SQL = (
    "(COALESCE(session_id, '') > %s OR (COALESCE(session_id, '') = %s AND (COALESCE(seq, -1) > %s "
    "OR (COALESCE(seq, -1) = %s AND (kind < %s OR (kind = %s AND rid > COALESCE("
    "(SELECT r2.rid FROM records r2 WHERE r2.id = %s AND r2.user_id = %s), -1)))))))"
)
LIST_ORDER = "ORDER BY session_id NULLS FIRST, seq NULLS FIRST, kind DESC, rid"


def after_params(user_id: str, after: MemoryRecord) -> list[object]:
    session, seq = after.session_id or "", -1 if after.seq is None else after.seq
    kind = after.kind.value
    return [session, session, seq, seq, kind, kind, after.id, user_id]
