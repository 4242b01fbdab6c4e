"""The PostgreSQL store's lexical index: the same per-user inverted index as the SQLite store's
(:mod:`engram.store.sqlite.lexical`), with the same tokens (:mod:`engram.store.lexical`) and the
same BM25 arithmetic, so that both backends rank identically.

- ``lex_postings (user_id, term, rid, tf, len, kind)``: one row per (user, stem, record), keyed
  in that order: a query reads only the caller's postings of its stems.
- ``records.lex_len`` / ``records.lex_terms``: a record's length in tokens and its distinct
  stems (NULL: not indexed), so that a delete removes its postings by key.
- ``user_stats (user_id, docs, tokens, ...)``: the user's totals.

Why not ``tsvector`` and ``ts_rank``: ``ts_rank`` is not BM25 (no IDF, no length
normalisation of that kind), and PostgreSQL's parser and stemmers do not make FTS5's tokens,
so even tsvector candidates re-scored with BM25 would differ from SQLite's where the tokens do.
Statistics kept in SQL reproduce SQLite's rankings exactly (tests/test_postgres.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Connection

from engram.store.lexical import K1, B, LexicalDoc, idf, lexical_doc
from engram.store.postgres.rows import where_sql
from engram.types import VECTOR_ONLY_KINDS, MemoryRecord, RecordFilter, RecordKind

__all__ = ["KIND_CODES", "index_docs", "lexical_docs", "search_ids", "unindex_docs"]

KIND_CODES = {kind: code for code, kind in enumerate(RecordKind)}
"""The same small integers as the SQLite store's (append new kinds)."""


def lexical_docs(records: Sequence[MemoryRecord]) -> list[LexicalDoc | None]:
    """What the index keeps of each record (None: a vector-only kind, not indexed)."""
    return [None if r.kind in VECTOR_ONLY_KINDS else lexical_doc(r.key_text) for r in records]


def index_docs(
    conn: Connection[Any], user_id: str, docs: Sequence[tuple[int, MemoryRecord, LexicalDoc]]
) -> None:
    """Add the postings of the user's (rid, record, doc) and count them in the user's totals,
    in the caller's transaction (``records.lex_len`` / ``lex_terms`` are the caller's to
    write). One statement for the postings (COPY is not allowed on a table with row-level
    security)."""
    if not docs:
        return
    postings = [(term, rid, tf, d.length, KIND_CODES[r.kind])
                for rid, r, d in docs for term, tf in d.terms.items()]  # fmt: skip
    conn.execute(
        "INSERT INTO lex_postings (user_id, term, rid, tf, len, kind) "
        "SELECT %s, * FROM unnest(%b::text[], %b::bigint[], %b::int[], %b::int[], %b::smallint[])",
        [user_id, *(list(column) for column in zip(*postings, strict=True))]
        if postings
        else [user_id, [], [], [], [], []],
    )
    conn.execute(
        "INSERT INTO user_stats (user_id, docs, tokens) VALUES (%s, %s, %s) "
        "ON CONFLICT (user_id) DO UPDATE SET docs = user_stats.docs + excluded.docs, "
        "tokens = user_stats.tokens + excluded.tokens",
        (user_id, len(docs), sum(d.length for _, _, d in docs)),
    )


def unindex_docs(conn: Connection[Any], user_id: str, rids: Sequence[int]) -> None:
    """Remove the postings of the user's records (by rid) and take them out of the user's
    totals; rids not indexed are ignored. The records' ``lex_*`` columns are the caller's (it
    deletes the rows, or rewrites them)."""
    if not rids:
        return
    gone = conn.execute(
        "SELECT rid, lex_len, lex_terms FROM records "
        "WHERE user_id = %s AND rid = ANY(%s::bigint[]) AND lex_len IS NOT NULL",
        (user_id, list(rids)),
    ).fetchall()
    if not gone:
        return
    conn.execute(
        "DELETE FROM lex_postings p USING unnest(%s::bigint[], %s::text[]) AS g (rid, term) "
        "WHERE p.user_id = %s AND p.term = g.term AND p.rid = g.rid",
        (
            [rid for rid, _, terms in gone for _ in terms],
            [term for _, _, terms in gone for term in terms],
            user_id,
        ),
    )
    conn.execute(
        "UPDATE user_stats SET docs = docs - %s, tokens = tokens - %s WHERE user_id = %s",
        (len(gone), sum(int(length) for _, length, _ in gone), user_id),
    )


def _weights(
    conn: Connection[Any], user_id: str, stems: Sequence[str]
) -> tuple[list[tuple[str, float]], int, int]:
    user = conn.execute(
        "SELECT docs, tokens FROM user_stats WHERE user_id = %s", (user_id,)
    ).fetchone()
    if user is None or user[0] <= 0:
        return [], 0, 0
    docs, tokens = int(user[0]), int(user[1])
    df = dict(
        conn.execute(
            "SELECT term, COUNT(*) FROM lex_postings WHERE user_id = %s "
            "AND term = ANY(%s::text[]) GROUP BY term",
            (user_id, list(stems)),
        ).fetchall()
    )
    # in the query's order, as SQLite's VALUES list is (the sum of a score adds them so)
    weights = [(term, idf(docs, int(df[term]))) for term in stems if term in df]
    return weights, docs, tokens


def search_ids(
    conn: Connection[Any], where: RecordFilter, stems: Sequence[str], limit: int
) -> list[tuple[str, float]]:
    """The user's records matching any of ``stems`` within the filter, as (id, BM25 score),
    best first (ties: oldest first)."""
    weights, docs, tokens = _weights(conn, where.user_id, stems)
    if not weights or limit <= 0:
        return []
    clause, params = "", list[object]()
    if where.kinds and set(where.kinds) != set(RecordKind):
        clause = "AND p.kind = ANY(%s::smallint[])"
        params.append([KIND_CODES[k] for k in where.kinds])
    if where.session_id is not None or where.agent_id is not None:
        within, more = where_sql(RecordFilter(where.user_id, where.agent_id, where.session_id))
        clause += f" AND p.rid IN (SELECT rid FROM records WHERE {within})"
        params.extend(more)
    # BM25: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl)), summed over terms,
    # in float8 and in the order of engram.store.sqlite.lexical.search
    rows = conn.execute(
        "WITH q (term, w) AS (SELECT * FROM unnest(%s::text[], %s::float8[])), "
        "hits AS (SELECT p.rid, SUM(q.w * p.tf * %s::float8 / (p.tf + %s::float8 "
        "+ %s::float8 * p.len)) AS s FROM q JOIN lex_postings p ON p.user_id = %s "
        f"AND p.term = q.term WHERE true {clause} GROUP BY p.rid ORDER BY s DESC, p.rid "
        "LIMIT %s) "
        "SELECT r.id, h.s FROM hits h JOIN records r ON r.rid = h.rid ORDER BY h.s DESC, h.rid",
        [
            [t for t, _ in weights], [w for _, w in weights],
            K1 + 1.0, K1 * (1.0 - B), K1 * B * docs / tokens if tokens else 0.0,
            where.user_id, *params, limit,
        ],
    ).fetchall()  # fmt: skip
    return [(str(rid), float(score)) for rid, score in rows]
