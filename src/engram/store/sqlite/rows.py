"""Conversion between MemoryRecord objects and SQLite rows, and the two ways of selecting
records: by a filter (``where_sql``) and by key (``owned_rows``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from engram.types import HistoryEvent, KeyRef, MemoryRecord, RecordFilter, RecordKind

__all__ = [
    "AFTER_SQL",
    "HISTORY_COLUMNS",
    "RECORD_COLUMNS",
    "REF_COLUMNS",
    "V1_COLUMNS",
    "after_params",
    "from_iso",
    "owned_rows",
    "record_from_row",
    "record_params",
    "ref_from_row",
    "to_iso",
    "where_sql",
]

V1_COLUMNS = (
    "id, user_id, agent_id, session_id, kind, role, name, seq, text, timestamp, created_at, "
    "valid_from, valid_to, provenance, message_ids, metadata"
)  # the columns of schema versions 1 and 2 (read by the migrations)
RECORD_COLUMNS = V1_COLUMNS + ", expired_at, superseded_by"


REF_COLUMNS = "id, kind, provenance, name, timestamp, text, valid_from, valid_to, expired_at"
_KINDS = {kind.value: kind for kind in RecordKind}


def to_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat()


@lru_cache(maxsize=8192)  # the records of one session share a few timestamps
def from_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _strings(value: str) -> tuple[str, ...]:
    """A JSON list of strings, as ``json.dumps`` writes it. Without a backslash no string in
    it holds a quote (it would be escaped), so splitting at ``", "`` is exact; anything else
    (escapes, other spacing) goes to the JSON parser. A search reads ~800 of them."""
    if value == "[]":
        return ()
    if len(value) > 3 and value[:2] == '["' and value[-2:] == '"]' and "\\" not in value:
        parts = value[2:-2].split('", "')
        if not any('"' in part for part in parts):
            return tuple(parts)
    return tuple(json.loads(value))


def _required_iso(value: str) -> datetime:
    parsed = from_iso(value)
    assert parsed is not None
    return parsed


def record_params(record: MemoryRecord) -> tuple[Any, ...]:
    """The values for ``RECORD_COLUMNS``, in order."""
    return (
        record.id,
        record.user_id,
        record.agent_id,
        record.session_id,
        record.kind.value,
        record.role,
        record.name,
        record.seq,
        record.text,
        to_iso(record.timestamp),
        to_iso(record.created_at),
        to_iso(record.valid_from),
        to_iso(record.valid_to),
        json.dumps(list(record.provenance)),
        json.dumps(list(record.message_ids)),
        json.dumps(dict(record.metadata), ensure_ascii=False),
        to_iso(record.expired_at),
        record.superseded_by,
    )


def record_from_row(row: sqlite3.Row | tuple[Any, ...]) -> MemoryRecord:
    """A record from the ``RECORD_COLUMNS`` (or the ``V1_COLUMNS``) of a row."""
    values = tuple(row)
    (rid, user_id, agent_id, session_id, kind, role, name, seq, text, timestamp, created_at,
     valid_from, valid_to, provenance, message_ids, metadata) = values[:16]  # fmt: skip
    expired_at, superseded_by = values[16:] if len(values) > 16 else (None, None)
    return MemoryRecord(
        id=rid,
        kind=RecordKind(kind),
        text=text,
        user_id=user_id,
        session_id=session_id,
        agent_id=agent_id,
        role=role,
        name=name,
        seq=seq,
        timestamp=_required_iso(timestamp),
        created_at=_required_iso(created_at),
        provenance=_strings(provenance),
        message_ids=_strings(message_ids),
        valid_from=from_iso(valid_from),
        valid_to=from_iso(valid_to),
        metadata={} if metadata == "{}" else json.loads(metadata),
        expired_at=from_iso(expired_at),
        superseded_by=superseded_by,
    )


HISTORY_COLUMNS = "id, record_id, user_id, event, old_text, new_text, at, reason"


def history_from_row(row: tuple[Any, ...]) -> HistoryEvent:
    hid, record_id, user_id, event, old_text, new_text, at, reason = row
    return HistoryEvent(
        hid, record_id, user_id, event, old_text, new_text, _required_iso(at), reason
    )


def ref_from_row(row: tuple[Any, ...]) -> KeyRef:
    """A :class:`KeyRef` from the ``REF_COLUMNS`` of a row."""
    rid, kind, provenance, name, timestamp, text, valid_from, valid_to, expired_at = row
    return KeyRef(
        rid, _KINDS[kind], _strings(provenance), name, _required_iso(timestamp), text,
        from_iso(valid_from), from_iso(valid_to), from_iso(expired_at),
    )  # fmt: skip


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
    if where.as_of is not None:  # as valid_at(): ISO strings in UTC compare as the times do
        clauses.append(
            f"(CASE WHEN {p}kind = 'fact' THEN COALESCE({p}valid_from, {p}timestamp) <= ? "
            f"AND ({p}valid_to IS NULL OR {p}valid_to > ?) ELSE {p}timestamp <= ? END)"
        )
        when = to_iso(where.as_of)
        params.extend([when, when, when])
    return " AND ".join(clauses), params


def owned_rows(
    conn: sqlite3.Connection, user_id: str, columns: str, key: str, values: Sequence[object]
) -> list[tuple[Any, ...]]:
    """``columns`` of the user's records whose ``key`` (``id`` or ``rowid``) is among
    ``values``, 500 a statement, in no particular order. "+user_id": each row is found by its
    key, then its owner is checked (with the user_id index SQLite would scan all of a user's
    records)."""
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(values), 500):
        chunk = list(values[start : start + 500])
        found.extend(
            conn.execute(
                f"SELECT {columns} FROM records WHERE +user_id = ? "
                f"AND {key} IN ({', '.join('?' * len(chunk))})",
                [user_id, *chunk],
            )
        )
    return found


# Keyset pagination in the order of list(): (session_id, seq) ascending, kind descending, rowid.
# NULLs sort first, as '' and -1 do (ids are non-empty, seq >= 0). A record that has been deleted
# has no rowid any more: the records that tie with it on (session, seq, kind) are then listed.
# They came after it: a turn added once the session's last turn was deleted takes its seq; the
# keys that shared a deleted turn's seq were deleted with it, or rebuilt after it.
AFTER_SQL = (
    "(COALESCE(session_id, '') > ? OR (COALESCE(session_id, '') = ? AND (COALESCE(seq, -1) > ? "
    "OR (COALESCE(seq, -1) = ? AND (kind < ? OR (kind = ? AND rowid > COALESCE("
    "(SELECT rowid FROM records WHERE id = ? AND user_id = ?), -1)))))))"
)


def after_params(user_id: str, after: MemoryRecord) -> list[object]:
    session, seq = after.session_id or "", -1 if after.seq is None else after.seq
    kind = after.kind.value
    return [session, session, seq, seq, kind, kind, after.id, user_id]
