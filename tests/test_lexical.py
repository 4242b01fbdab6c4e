"""The lexical index: BM25 with each user's own statistics, checked against two references
(a direct Python computation, and SQLite FTS5's own bm25() on a one-user corpus), isolation
between users, and an index that stays exactly what the remaining records would rebuild."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engram import HashEmbedder, Memory, RecordFilter, SqliteStore
from engram.store.lexical import bm25_reference, query_stems, tokenize
from engram.types import MemoryRecord, RecordKind
from test_store_contract import DIM, rec, vec

WORDS = [
    *("apple", "banana", "cherry", "quartz", "granite", "river", "mountain", "painting"),
    *("running", "painted", "paints", "library", "coffee", "museum", "camping", "lake"),
    *("forest", "violin", "guitar", "bakery"),
]


def _corpus(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(n)]


def _store_with(
    texts: list[str], user: str = "u1", store: SqliteStore | None = None
) -> SqliteStore:
    s = store or SqliteStore(":memory:")
    s.bind_embedder("test", DIM)
    records = [rec(f"{user}-{i}", text, user=user, seq=i) for i, text in enumerate(texts)]
    s.add(records, np.vstack([vec(i % DIM) for i in range(len(texts))]))
    return s


def test_tokenizer_folds_case_and_diacritics_and_stems() -> None:
    assert tokenize("Café RUNNING, painted: the_end 42!") == [
        "cafe",
        "run",
        "paint",
        "the",
        "end",
        "42",
    ]
    assert tokenize("Ünïcödé naïve") == tokenize("unicode naive")
    assert tokenize("Москва и 東京") == ["москва", "и", "東京"]
    assert query_stems("What did she paint? Painting!") == ["paint"]
    assert query_stems("what is it") == ["what", "is", "it"]  # all stopwords: kept


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_the_reference_implementation(seed: int) -> None:
    rng = random.Random(seed)
    texts = _corpus(rng, 60)
    s = _store_with(texts)
    for _ in range(10):
        query = " ".join(rng.choices(WORDS, k=3))
        got = dict(s.lexical_search(query, RecordFilter("u1"), 100))
        want = {f"u1-{i}": score for i, score in bm25_reference(texts, query).items()}
        assert got.keys() == want.keys()
        for rid, score in want.items():
            assert got[rid] == pytest.approx(score, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_scores_match_sqlite_fts5_on_one_user(seed: int) -> None:
    """With one user, per-user statistics are the global ones: FTS5's bm25() is then an
    independent reference for the formula and the tokenizer."""
    rng = random.Random(seed)
    texts = _corpus(rng, 80)
    s = _store_with(texts)
    fts = sqlite3.connect(":memory:")
    fts.execute(
        "CREATE VIRTUAL TABLE t USING fts5 (x, tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    fts.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", list(enumerate(texts)))
    for _ in range(10):
        terms = rng.sample(WORDS, 2)
        if len(set(query_stems(" ".join(terms)))) < 2:
            continue  # FTS5 counts each phrase, so a stem given twice twice; Engram once
        match = " OR ".join(f'"{t}"' for t in terms)
        want = {
            f"u1-{i}": -score
            for i, score in fts.execute("SELECT rowid, bm25(t) FROM t WHERE t MATCH ?", (match,))
        }
        got = dict(s.lexical_search(" ".join(terms), RecordFilter("u1"), 100))
        assert got.keys() == want.keys()
        for rid, score in want.items():
            assert got[rid] == pytest.approx(score, rel=1e-6)


def test_one_users_text_does_not_change_another_users_scores(tmp_path: Path) -> None:
    """The probe of issue 8: user A's 40 turns about quartz moved user B's score from 0.39 to
    4.55 and flipped the order of B's two turns."""
    mem = Memory(store=SqliteStore(tmp_path / "m.db"), embedder=HashEmbedder())
    mem.add(
        [
            {"role": "user", "content": "I found a quartz crystal on the beach near the pier"},
            {"role": "user", "content": "granite countertops and a quartz sink for the kitchen"},
        ],
        user_id="b",
        session_id="s",
    )

    def scores() -> list[tuple[str, float]]:
        return mem.store.lexical_search("quartz kitchen", RecordFilter("b"), 10)

    before = scores()
    for i in range(40):
        mem.add([{"role": "user", "content": f"quartz quartz note {i}"}], user_id="a")
    mem.add([{"role": "user", "content": "kitchen kitchen kitchen"}], user_id="a", session_id="x")
    assert scores() == before
    hits = mem.search("quartz kitchen", user_id="b", config="lexical")
    assert hits[0].record.text.startswith("granite")
    mem.close()


def _rebuilt(s: SqliteStore) -> tuple[list[tuple[object, ...]], ...]:
    """The index tables as they are, and as indexing the remaining records from scratch gives."""
    conn = s._conn
    tables = ("lex_users", "lex_docs", "lex_postings")
    now = [sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables]
    fresh = SqliteStore(":memory:")
    fresh.bind_embedder("test", DIM)
    records = [r for user in ("u1", "u2") for r in s.list(RecordFilter(user), limit=10_000)]
    _copy(fresh, s, records)
    then = [sorted(fresh._conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables]
    return now, then


def _copy(dest: SqliteStore, src: SqliteStore, records: list[MemoryRecord]) -> None:
    """Insert ``records`` into ``dest`` under the same rowids as in ``src``."""
    from engram.store.sqlite import lexical

    rowids = dict(src._conn.execute("SELECT id, rowid FROM records").fetchall())
    users = [row for row in src._conn.execute("SELECT uid, user_id FROM lex_users")]
    dest._conn.executemany("INSERT INTO lex_users (uid, user_id) VALUES (?, ?)", users)
    lexical.index_docs(dest._conn, [(rowids[r.id], r) for r in records])


def test_index_is_what_the_remaining_records_rebuild_after_any_edits() -> None:
    rng = random.Random(7)
    s = SqliteStore(":memory:")
    s.bind_embedder("test", DIM)
    alive: list[tuple[str, str]] = []
    for step in range(120):
        user = rng.choice(["u1", "u2"])
        op = rng.random()
        if op < 0.6 or not alive:
            rid = f"r{step}"
            s.add([rec(rid, " ".join(rng.choices(WORDS, k=rng.randint(1, 8))), user=user)], vec(1))
            alive.append((rid, user))
        elif op < 0.8:
            rid, owner = alive.pop(rng.randrange(len(alive)))
            s.delete(owner, rid)
        else:
            rid, owner = rng.choice(alive)
            s.update(owner, [(rid, " ".join(rng.choices(WORDS, k=4)))], vec(2))
    now, then = _rebuilt(s)
    assert now[1:] == then[1:]  # documents and postings
    assert [row[2:] for row in now[0]] == [row[2:] for row in then[0]]  # users' totals


def test_forget_removes_every_index_row_of_the_user() -> None:
    s = _store_with(["quartz river", "lake quartz"], user="u1")
    _store_with(["quartz"], user="u2", store=s)
    s.forget("u1")
    conn = s._conn
    assert conn.execute("SELECT user_id FROM lex_users").fetchall() == [("u2",)]
    assert conn.execute("SELECT COUNT(*) FROM lex_docs").fetchone() == (1,)
    assert conn.execute("SELECT COUNT(*) FROM lex_postings").fetchone() == (1,)
    assert s.lexical_search("quartz", RecordFilter("u1"), 10) == []
    assert [rid for rid, _ in s.lexical_search("quartz", RecordFilter("u2"), 10)] == ["u2-0"]


def test_filters_by_session_agent_and_kind() -> None:
    s = SqliteStore(":memory:")
    s.bind_embedder("test", DIM)
    from dataclasses import replace

    records = [
        replace(rec("a", "quartz one", session="s1"), agent_id="x"),
        rec("b", "quartz two", session="s2"),
        replace(rec("c", "quartz three", session="s1"), kind=RecordKind.ROUND),
    ]
    s.add(records, vec(0, 1, 2))

    def ids(where: RecordFilter) -> set[str]:
        return {rid for rid, _ in s.lexical_search("quartz", where, 10)}

    assert ids(RecordFilter("u1")) == {"a", "b", "c"}
    assert ids(RecordFilter("u1", session_id="s1")) == {"a", "c"}
    assert ids(RecordFilter("u1", agent_id="x")) == {"a"}
    assert ids(RecordFilter("u1", kinds=(RecordKind.TURN,))) == {"a", "b"}
    assert ids(RecordFilter("u1", session_id="s1", kinds=(RecordKind.ROUND,))) == {"c"}
