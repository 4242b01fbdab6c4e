"""The SQLite store's lexical index: a per-user inverted index in plain tables, scored with
BM25 over the user's own statistics (see :mod:`engram.store.lexical`).

Tables (migration 2):

- ``lex_users (uid, user_id, docs, tokens)``: a small integer per user and the user's totals.
- ``lex_docs (doc, uid, len, terms)``: one row per indexed record (``doc`` is its rowid), with its
  length and distinct stems, so that a delete knows which postings to remove.
- ``lex_postings (uid, term, doc, tf, len, kind)``: one row per (user, stem, document), keyed in
  that order, so a query reads only the caller's postings of the query's stems.

Why not FTS5: its BM25 statistics are global (one user's text changed another user's scores and
ranks), and deleting from it leaves the deleted terms in old segments until the whole index is
merged (2 s per delete at 200k turns). Here a delete removes a document's rows by key, and
``secure_delete`` zeroes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from engram.store.lexical import K1, B, LexicalDoc, idf, lexical_doc
from engram.store.sqlite.rows import where_sql
from engram.types import VECTOR_ONLY_KINDS, MemoryRecord, RecordFilter, RecordKind

if TYPE_CHECKING:  # (refs imports the writers, which import this module)
    from engram.store.sqlite.refs import RefMemo

__all__ = [
    "KIND_CODES",
    "SCHEMA",
    "drop_user",
    "has_text_row",
    "index_docs",
    "search",
    "search_ids",
    "unindex_docs",
]

SCHEMA = """
CREATE TABLE lex_users (
    uid     INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE,
    docs    INTEGER NOT NULL DEFAULT 0,
    tokens  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE lex_docs (
    doc   INTEGER PRIMARY KEY,
    uid   INTEGER NOT NULL,
    len   INTEGER NOT NULL,
    terms TEXT NOT NULL
);
CREATE TABLE lex_postings (
    uid  INTEGER NOT NULL,
    term TEXT NOT NULL,
    doc  INTEGER NOT NULL,
    tf   INTEGER NOT NULL,
    len  INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    PRIMARY KEY (uid, term, doc)
) WITHOUT ROWID;
"""

KIND_CODES = {kind: code for code, kind in enumerate(RecordKind)}
"""Stable small integers for the record kinds, stored with each posting (append new kinds)."""


def has_text_row(record: MemoryRecord) -> bool:
    """Whether a record is in the lexical index: every kind but the vector-only ones."""
    return record.kind not in VECTOR_ONLY_KINDS


def _uid(conn: sqlite3.Connection, user_id: str, *, create: bool) -> int | None:
    if create:
        conn.execute("INSERT OR IGNORE INTO lex_users (user_id) VALUES (?)", (user_id,))
    row = conn.execute("SELECT uid FROM lex_users WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else int(row[0])


def index_docs(conn: sqlite3.Connection, rows: Sequence[tuple[int, MemoryRecord]]) -> None:
    """Index the key text of each (rowid, record) that has a text row, in the caller's
    transaction."""
    by_user: dict[str, list[tuple[int, MemoryRecord, LexicalDoc]]] = {}
    for rowid, record in rows:
        if has_text_row(record):
            doc = lexical_doc(record.key_text)
            by_user.setdefault(record.user_id, []).append((rowid, record, doc))
    for user_id, docs in by_user.items():
        uid = _uid(conn, user_id, create=True)
        conn.executemany(
            "INSERT INTO lex_docs (doc, uid, len, terms) VALUES (?, ?, ?, ?)",
            [(rowid, uid, d.length, " ".join(d.terms)) for rowid, _, d in docs],
        )
        conn.executemany(
            "INSERT INTO lex_postings (uid, term, doc, tf, len, kind) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (uid, term, rowid, tf, d.length, KIND_CODES[r.kind])
                for rowid, r, d in docs
                for term, tf in d.terms.items()
            ],
        )
        conn.execute(
            "UPDATE lex_users SET docs = docs + ?, tokens = tokens + ? WHERE uid = ?",
            (len(docs), sum(d.length for _, _, d in docs), uid),
        )


def unindex_docs(conn: sqlite3.Connection, rowids: Iterable[int]) -> None:
    """Remove documents (by rowid) from the index, in the caller's transaction; rowids that are
    not indexed are ignored."""
    wanted = list(rowids)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        docs = conn.execute(
            f"SELECT doc, uid, len, terms FROM lex_docs WHERE doc IN ({marks})", chunk
        ).fetchall()
        conn.executemany(
            "DELETE FROM lex_postings WHERE uid = ? AND term = ? AND doc = ?",
            [(uid, term, doc) for doc, uid, _, terms in docs for term in terms.split()],
        )
        totals: dict[int, tuple[int, int]] = {}
        for _, uid, length, _ in docs:
            count, tokens = totals.get(uid, (0, 0))
            totals[uid] = (count + 1, tokens + length)
        conn.executemany(
            "UPDATE lex_users SET docs = docs - ?, tokens = tokens - ? WHERE uid = ?",
            [(count, tokens, uid) for uid, (count, tokens) in totals.items()],
        )
        conn.execute(f"DELETE FROM lex_docs WHERE doc IN ({marks})", chunk)


def drop_user(conn: sqlite3.Connection, user_id: str) -> None:
    """Remove every index row of the user and the user's totals (before the user's records are
    deleted: their rowids name the documents)."""
    uid = _uid(conn, user_id, create=False)
    if uid is None:
        return
    conn.execute("DELETE FROM lex_postings WHERE uid = ?", (uid,))
    conn.execute(
        "DELETE FROM lex_docs WHERE doc IN (SELECT rowid FROM records WHERE user_id = ?)",
        (user_id,),
    )
    conn.execute("DELETE FROM lex_users WHERE uid = ?", (uid,))


def search(
    conn: sqlite3.Connection,
    user_id: str,
    stems: Sequence[str],
    kinds: Sequence[RecordKind],
    limit: int,
    within: tuple[str, Sequence[object]] | None = None,
) -> list[tuple[int, float]]:
    """The user's documents matching any of ``stems`` (and of one of ``kinds``, if given), as
    (rowid, BM25 score), best first (ties: oldest first). ``within`` is an SQL condition on
    ``records`` with its parameters (a session or agent scope): only the rowids it selects."""
    user = conn.execute(
        "SELECT uid, docs, tokens FROM lex_users WHERE user_id = ?", (user_id,)
    ).fetchone()
    if user is None or not stems or limit <= 0 or user[1] <= 0:
        return []
    uid, docs, tokens = (int(v) for v in user)
    marks = ", ".join("?" * len(stems))
    df = dict(
        conn.execute(
            f"SELECT term, COUNT(*) FROM lex_postings WHERE uid = ? AND term IN ({marks}) "
            "GROUP BY term",
            [uid, *stems],
        ).fetchall()
    )
    weights = [(term, idf(docs, int(n))) for term, n in df.items()]
    if not weights:
        return []
    values = ", ".join("(?, ?)" for _ in weights)
    clause = ""
    params: list[object] = []
    if kinds and set(kinds) != set(RecordKind):
        clause = f"AND p.kind IN ({', '.join('?' * len(kinds))})"
        params = [KIND_CODES[k] for k in kinds]
    if within is not None:
        clause += f" AND p.doc IN (SELECT rowid FROM records WHERE {within[0]})"
        params.extend(within[1])
    # BM25: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl)), summed over terms
    rows = conn.execute(
        f"WITH q (term, w) AS (VALUES {values}) "
        "SELECT p.doc, SUM(q.w * p.tf * ? / (p.tf + ? + ? * p.len)) AS s "
        "FROM q JOIN lex_postings p ON p.uid = ? AND p.term = q.term "
        f"WHERE 1 {clause} GROUP BY p.doc ORDER BY s DESC, p.doc LIMIT ?",
        [
            *(v for pair in weights for v in pair),
            K1 + 1.0, K1 * (1.0 - B), K1 * B * docs / tokens if tokens else 0.0,
            uid, *params, limit,
        ],
    ).fetchall()  # fmt: skip
    return [(int(doc), float(score)) for doc, score in rows]


def search_ids(
    conn: sqlite3.Connection,
    where: RecordFilter,
    stems: Sequence[str],
    limit: int,
    memo: RefMemo | None = None,
) -> list[tuple[str, float]]:
    """:func:`search` in a filter's scope, with record ids (those of rowids ``memo`` knows from
    it, the others read and remembered there)."""
    within = None
    if where.session_id is not None or where.agent_id is not None:  # kinds: on the postings
        within = where_sql(RecordFilter(where.user_id, where.agent_id, where.session_id))
    hits = search(conn, where.user_id, stems, where.kinds, limit, within)
    known = {} if memo is None else memo.ids  # (evictions meanwhile: take what is there first)
    ids = {rowid: i for rowid, _ in hits if (i := known.get(rowid)) is not None}
    missing = [rowid for rowid, _ in hits if rowid not in ids]
    if missing:
        read = conn.execute(
            f"SELECT rowid, id FROM records WHERE rowid IN ({', '.join('?' * len(missing))})",
            missing,
        ).fetchall()
        ids.update(read)
        if memo is not None:
            memo.keep_ids(read)
    return [(ids[rowid], score) for rowid, score in hits if rowid in ids]
