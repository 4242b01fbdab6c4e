"""How results are printed: plain JSON-ready dicts (timestamps as ISO 8601 strings) and, for
``--pretty``, fixed-width tables."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engram import HistoryEvent, Hit, MemoryRecord, SessionHit, StoreStats

__all__ = [
    "event_json",
    "events_table",
    "hit_json",
    "hits_table",
    "iso",
    "mapping_table",
    "record_json",
    "record_table",
    "records_table",
    "session_json",
    "sessions_table",
    "stats_json",
    "stats_table",
    "table",
]

Row = Sequence[object]
MAX_COLUMN = 60
MIN_LAST = 40


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def record_json(record: MemoryRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind.value,
        "user_id": record.user_id,
        "session_id": record.session_id,
        "agent_id": record.agent_id,
        "message_id": record.message_id,
        "seq": record.seq,
        "role": record.role,
        "name": record.name,
        "text": record.text,
        "timestamp": iso(record.timestamp),
        "created_at": iso(record.created_at),
        "valid_from": iso(record.valid_from),
        "valid_to": iso(record.valid_to),
        "provenance": list(record.provenance),
        "message_ids": list(record.message_ids),
        "metadata": dict(record.metadata),
        "expired_at": iso(record.expired_at),
        "superseded_by": record.superseded_by,
    }


def hit_json(hit: Hit) -> dict[str, Any]:
    record = hit.record
    return {
        "id": record.id,
        "message_id": hit.message_id,
        "session_id": record.session_id,
        "role": record.role,
        "name": record.name,
        "text": record.text,
        "timestamp": iso(record.timestamp),
        "score": hit.score,
        "found_by": {
            name: {"rank": source.rank, "score": source.score}
            for name, source in hit.sources.items()
        },
    }


def session_json(session: SessionHit) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "score": session.score,
        "hits": [hit_json(hit) for hit in session.hits],
    }


def event_json(event: HistoryEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "record_id": event.record_id,
        "event": event.event,
        "old_text": event.old_text,
        "new_text": event.new_text,
        "at": iso(event.at),
        "reason": event.reason,
    }


def stats_json(stats: StoreStats) -> dict[str, Any]:
    return {
        "records": dict(stats.records),
        "users": stats.users,
        "sessions": stats.sessions,
        "size_bytes": stats.size_bytes,
        "embedder": stats.embedder,
        "dim": stats.dim,
        "pending_jobs": stats.pending_jobs,
        "failed_jobs": stats.failed_jobs,
        "llm": {purpose: dict(usage) for purpose, usage in stats.llm.items()},
    }


# -- tables ---------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).split())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def table(headers: Sequence[str], rows: Sequence[Row], *, empty: str = "(no results)") -> str:
    """Columns sized to their content (at most 60 characters); on a terminal the last column
    takes the rest of its width."""
    if not rows:
        return empty
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    widths[:-1] = [min(w, MAX_COLUMN) for w in widths[:-1]]
    if sys.stdout.isatty():  # fit the terminal; a file or pipe gets every character
        fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
        widths[-1] = min(widths[-1], max(shutil.get_terminal_size().columns - fixed, MIN_LAST))
    lines = [headers, ["-" * w for w in widths], *cells]
    return "\n".join(
        "  ".join(_clip(c, w).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def mapping_table(values: Mapping[str, object]) -> str:
    width = max((len(k) for k in values), default=0)
    return "\n".join(f"{key.ljust(width)}  {_cell(value)}" for key, value in values.items())


def _found_by(hit: Hit) -> str:
    return " ".join(f"{name}#{source.rank}" for name, source in hit.sources.items())


def hits_table(hits: Sequence[Hit]) -> str:
    rows = [
        (n, h.score, h.record.session_id, h.record.timestamp, h.record.role, _found_by(h),
         h.record.key_text)
        for n, h in enumerate(hits, 1)
    ]  # fmt: skip
    return table(("#", "score", "session", "time", "role", "found by", "text"), rows)


def sessions_table(sessions: Sequence[SessionHit]) -> str:
    rows = [
        (n, s.score, s.session_id, len(s.hits), s.hits[0].record.key_text if s.hits else "")
        for n, s in enumerate(sessions, 1)
    ]
    return table(("#", "score", "session", "hits", "best turn"), rows)


def records_table(records: Sequence[MemoryRecord]) -> str:
    rows = [
        (r.id, r.kind.value, r.session_id, r.seq, r.timestamp, r.role, r.key_text) for r in records
    ]
    return table(("id", "kind", "session", "seq", "time", "role", "text"), rows)


def record_table(record: MemoryRecord) -> str:
    fields = record_json(record)
    del fields["text"]
    return mapping_table(fields) + "\n\n" + record.text


def events_table(events: Sequence[HistoryEvent]) -> str:
    rows = [(e.id, e.at, e.event, e.old_text, e.new_text, e.reason) for e in events]
    return table(("#", "at", "event", "old text", "new text", "reason"), rows)


def stats_table(stats: StoreStats) -> str:
    values: dict[str, object] = {f"{kind} records": n for kind, n in sorted(stats.records.items())}
    values.update(
        users=stats.users, sessions=stats.sessions, size_bytes=stats.size_bytes,
        embedder=stats.embedder, dim=stats.dim, pending_jobs=stats.pending_jobs,
        failed_jobs=stats.failed_jobs,
    )  # fmt: skip
    for purpose, usage in sorted(stats.llm.items()):
        values[f"llm {purpose}"] = (
            f"{usage.get('calls', 0)} calls, {usage.get('prompt_tokens', 0)} prompt + "
            f"{usage.get('completion_tokens', 0)} completion tokens"
        )
    return mapping_table(values)
