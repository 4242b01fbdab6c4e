"""Row-level operations on a connection inside the caller's transaction: the pieces the
PostgreSQL store's public methods are built from (as :mod:`engram.store.sqlite.ops`).

Each one acts for the user whose setting (:func:`as_user`) the transaction has made: row-level
security lets it see and change nothing else, and every statement filters by user as well."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from psycopg import Connection

from engram.embed.base import Vectors
from engram.errors import ConflictError, NotFoundError
from engram.store.base import SessionTail, Sources
from engram.store.lexical import LexicalDoc
from engram.store.postgres import lexical
from engram.store.postgres.rows import (
    RECORD_COLUMNS,
    owned_rows,
    record_from_row,
    record_params,
    where_sql,
)
from engram.types import MemoryRecord, RecordFilter

__all__ = [
    "as_user",
    "check_sources",
    "check_tail",
    "delete_rows",
    "derived",
    "forget_session",
    "forget_user",
    "get_record",
    "insert_records",
    "lock_sessions",
    "update_texts",
    "write_history",
]


def as_user(conn: Connection[Any], user_id: str) -> None:
    """Act for ``user_id`` until the transaction ends (the row-level security setting)."""
    conn.execute("SELECT set_config('engram.user_id', %s, true)", (user_id,))


def lock_sessions(conn: Connection[Any], sessions: Iterable[tuple[str, str | None]]) -> None:
    """Take the transaction-level advisory lock of each (user, session), in one order (no two
    writers wait for each other's): appends to a session, and the changes of its turns that a
    conditional append checks, then run one at a time across processes."""
    for user_id, session_id in sorted(set(sessions), key=lambda k: (k[0], k[1] or "")):
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))",
            (f"{user_id}\x1f{session_id or ''}",),
        )


Event = tuple[MemoryRecord, str, str | None, str | None]  # record, event, old text, new text


def write_history(
    conn: Connection[Any], events: Sequence[Event], reasons: Sequence[str | None] = ()
) -> None:
    """Append events to the history; ``reasons[i]`` (if given) says why ``events[i]``."""
    if not events:
        return
    now = datetime.now(UTC)
    why = list(reasons) + [None] * (len(events) - len(reasons))
    conn.cursor().executemany(
        "INSERT INTO history "
        "(record_id, user_id, session_id, event, old_text, new_text, at, reason) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            (r.id, r.user_id, r.session_id, event, old, new, now, reason)
            for (r, event, old, new), reason in zip(events, why, strict=True)
        ],
    )


_INSERT = f"""
INSERT INTO records ({RECORD_COLUMNS}, embedding, lex_len, lex_terms)
SELECT id, user_id, agent_id, session_id, kind, role, name, seq, text, ts, created_at,
       valid_from, valid_to, ARRAY(SELECT jsonb_array_elements_text(provenance::jsonb)),
       ARRAY(SELECT jsonb_array_elements_text(message_ids::jsonb)), metadata, expired_at,
       superseded_by, embedding, lex_len, CASE WHEN lex_len IS NULL THEN NULL
                ELSE ARRAY(SELECT jsonb_array_elements_text(lex_terms::jsonb)) END
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::bigint[], %b::text[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[],
            %b::timestamptz[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
            %b::text[], %b::vector[], %b::int[], %b::text[]) WITH ORDINALITY
     AS u (id, user_id, agent_id, session_id, kind, role, name, seq, text, ts, created_at,
           valid_from, valid_to, provenance, message_ids, metadata, expired_at, superseded_by,
           embedding, lex_len, lex_terms, ord)
ORDER BY ord
ON CONFLICT (id) DO NOTHING
RETURNING id, rid
"""


def _columns(
    new: Sequence[tuple[MemoryRecord, int]], vectors: Vectors, docs: Sequence[LexicalDoc | None]
) -> list[list[Any]]:
    rows = []
    for (r, i), doc in zip(new, docs, strict=True):
        values = list(record_params(r))
        values[13], values[14] = json.dumps(values[13]), json.dumps(values[14])
        terms = None if doc is None else json.dumps(list(doc.terms))
        rows.append([*values, vectors[i].astype(np.float32),
                     None if doc is None else doc.length, terms])  # fmt: skip
    return [list(column) for column in zip(*rows, strict=True)]


def insert_records(
    conn: Connection[Any], records: Sequence[MemoryRecord], vectors: Vectors
) -> list[tuple[MemoryRecord, int]]:
    """Insert the records whose id is not stored yet, for any user (an id already stored, or
    repeated in ``records``, is skipped); (record, row of ``vectors``) for each one inserted.
    One INSERT per user of the batch, made as that user."""
    first = {r.id: i for i, r in reversed(list(enumerate(records)))}
    by_user: dict[str, list[tuple[MemoryRecord, int]]] = {}
    for i, r in enumerate(records):
        if first[r.id] == i:
            by_user.setdefault(r.user_id, []).append((r, i))
    inserted: list[tuple[MemoryRecord, int]] = []
    for user_id, mine in by_user.items():
        as_user(conn, user_id)
        docs = lexical.lexical_docs([r for r, _ in mine])
        rids = dict(conn.execute(_INSERT, _columns(mine, vectors, docs)).fetchall())
        new = [(r, i, d) for (r, i), d in zip(mine, docs, strict=True) if r.id in rids]
        if not new:
            continue
        lexical.index_docs(conn, user_id, [(rids[r.id], r, d) for r, _, d in new if d])
        _count_vectors(conn, user_id, len(new))
        conn.execute(
            "INSERT INTO sources (source_id, record_id, user_id) "
            "SELECT s, r, %s FROM unnest(%s::text[], %s::text[]) AS u (s, r) "
            "ON CONFLICT DO NOTHING",
            (user_id, *_pairs((src, r.id) for r, _, _ in new for src in r.provenance)),
        )
        write_history(conn, [(r, "ADD", None, r.text) for r, _, _ in new])
        inserted.extend((r, i) for r, i, _ in new)
    return inserted


def _pairs(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    listed = list(pairs)
    return [a for a, _ in listed], [b for _, b in listed]


def _count_vectors(conn: Connection[Any], user_id: str, change: int) -> None:
    conn.execute(
        "INSERT INTO user_stats (user_id, vectors) VALUES (%s, %s) ON CONFLICT (user_id) "
        "DO UPDATE SET vectors = user_stats.vectors + excluded.vectors",
        (user_id, change),
    )


def get_record(
    conn: Connection[Any], user_id: str, record_id: str, *, lock: bool = False
) -> MemoryRecord:
    row = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM records WHERE id = %s AND user_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (record_id, user_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no record {record_id!r} for this user")
    return record_from_row(row)


def update_texts(
    conn: Connection[Any], user_id: str, texts: Sequence[tuple[str, str]], vectors: Vectors
) -> list[MemoryRecord]:
    """Give the user's records (id, text) their new texts and vectors, reindexed and with an
    UPDATE event each; the updated records."""
    updated = []
    for (record_id, text), vector in zip(texts, vectors, strict=True):
        old = get_record(conn, user_id, record_id, lock=True)
        [(rid,)] = owned_rows(conn, user_id, "rid", "id", [record_id])
        lexical.unindex_docs(conn, user_id, [rid])
        new = replace(old, text=text)
        [doc] = lexical.lexical_docs([new])
        conn.execute(
            "UPDATE records SET text = %s, embedding = %s, lex_len = %s, lex_terms = %s "
            "WHERE rid = %s",
            (text, vector.astype(np.float32), None if doc is None else doc.length,
             None if doc is None else list(doc.terms), rid),
        )  # fmt: skip
        if doc is not None:
            lexical.index_docs(conn, user_id, [(rid, new, doc)])
        write_history(conn, [(new, "UPDATE", old.text, text)])
        updated.append(new)
    return updated


def delete_rows(conn: Connection[Any], user_id: str, ids: Sequence[str]) -> list[int]:
    """Hard-delete the user's records ``ids`` with their postings and provenance links, and
    blank the texts in their history (the events stay); return the rids deleted."""
    if not ids:
        return []
    rids = [int(r[0]) for r in owned_rows(conn, user_id, "rid", "id", ids)]
    lexical.unindex_docs(conn, user_id, rids)
    conn.execute(
        "DELETE FROM sources WHERE user_id = %s "
        "AND (record_id = ANY(%s::text[]) OR source_id = ANY(%s::text[]))",
        (user_id, list(ids), list(ids)),
    )
    conn.execute("DELETE FROM records WHERE user_id = %s AND rid = ANY(%s::bigint[])",
                 (user_id, rids))  # fmt: skip
    conn.execute(
        "UPDATE history SET old_text = NULL, new_text = NULL "
        "WHERE user_id = %s AND record_id = ANY(%s::text[]) "
        "AND (old_text IS NOT NULL OR new_text IS NOT NULL)",
        (user_id, list(ids)),
    )
    if rids:
        _count_vectors(conn, user_id, -len(rids))
    return rids


def forget_user(conn: Connection[Any], user_id: str) -> int:
    """Hard-delete every row of the user, in every table; return the number of records."""
    conn.execute("SELECT 1 FROM user_stats WHERE user_id = %s FOR UPDATE", (user_id,))
    for table in ("lex_postings", "sources", "history"):
        conn.execute(f"DELETE FROM {table} WHERE user_id = %s", (user_id,))
    count = conn.execute("DELETE FROM records WHERE user_id = %s", (user_id,)).rowcount
    conn.execute("DELETE FROM user_stats WHERE user_id = %s", (user_id,))
    return int(count)


def forget_session(conn: Connection[Any], user_id: str, session_id: str) -> list[str]:
    """Hard-delete the records of one session of the user (as :func:`delete_rows`) and the
    session's history rows; return the ids deleted."""
    where, params = where_sql(RecordFilter(user_id, session_id=session_id))
    ids = [str(r[0]) for r in conn.execute(f"SELECT id FROM records WHERE {where}", params)]
    delete_rows(conn, user_id, ids)
    conn.execute("DELETE FROM history WHERE user_id = %s AND session_id = %s",
                 (user_id, session_id))  # fmt: skip
    return ids


def derived(conn: Connection[Any], user_id: str, record_id: str) -> list[MemoryRecord]:
    """The user's records whose provenance includes ``record_id``, oldest first."""
    columns = ", ".join("r." + c.strip() for c in RECORD_COLUMNS.split(","))
    rows = conn.execute(
        f"SELECT {columns} FROM sources s JOIN records r ON r.id = s.record_id "
        "WHERE s.source_id = %s AND s.user_id = %s AND r.user_id = %s ORDER BY r.rid",
        (record_id, user_id, user_id),
    ).fetchall()
    return [record_from_row(row) for row in rows]


def check_tail(conn: Connection[Any], expect: SessionTail) -> None:
    """Raise ``ConflictError`` unless the session's last turns are still ``expect.turns`` (in
    the caller's transaction, which holds the session's lock). That no id of the add is stored
    yet is checked by the insert itself (an id of another user is invisible here)."""
    rows = conn.execute(
        "SELECT id, text FROM records WHERE user_id = %s AND session_id = %s AND kind = 'turn' "
        "ORDER BY seq DESC, rid DESC LIMIT %s",
        (expect.user_id, expect.session_id, max(1, len(expect.turns))),
    ).fetchall()
    if tuple((str(i), str(t)) for i, t in reversed(rows)) != expect.turns:
        raise ConflictError(f"session {expect.session_id!r} changed while the add was prepared")


def check_sources(conn: Connection[Any], user_id: str, record_id: str, expect: Sources) -> None:
    """Raise ``ConflictError`` unless the records an update rebuilds keys from still have the
    texts it read, and the keys derived from ``record_id`` are still the ones it read."""
    texts = dict(owned_rows(conn, user_id, "id, text", "id", list(expect.texts)))
    keys = frozenset(r.id for r in derived(conn, user_id, record_id))
    if texts != dict(expect.texts) or keys != expect.derived:
        raise ConflictError(f"record {record_id!r} or its neighbours changed meanwhile")
