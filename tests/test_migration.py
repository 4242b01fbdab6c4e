"""Opening a database made by an earlier Engram upgrades it in place: ``tests/data/engram-v1.db``
was written by Engram 0.1.0 (schema 1: FTS5 full-text index) through its public API — two users,
two sessions, an update and a delete."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engram import HashEmbedder, Memory, RecordFilter, RecordKind, SqliteStore
from engram.store.lexical import bm25_reference
from engram.store.sqlite.schema import MIGRATIONS

FIXTURE = Path(__file__).parent / "data" / "engram-v1.db"


@pytest.fixture
def upgraded(tmp_path: Path) -> Memory:
    path = tmp_path / "v1.db"
    shutil.copy(FIXTURE, path)
    assert b"zebracorn" in path.read_bytes()  # the deleted turn's text, in FTS5 and history
    return Memory(store=SqliteStore(path), embedder=HashEmbedder())


def test_schema_is_current_and_records_are_kept(upgraded: Memory) -> None:
    conn = upgraded.store._conn  # type: ignore[attr-defined]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "records_fts" not in names and {"lex_postings", "lex_docs", "lex_users"} <= names
    turns = upgraded.list(user_id="ann", limit=100)
    assert [t.message_id for t in turns] == ["m1", "m2", "m4", "m5"]
    assert turns[0].text == "I adopted a beagle named Rex. He loves the beach."
    assert upgraded.stats().records == {"round": 1, "sentence": 4, "turn": 5, "window": 1}


def test_lexical_index_is_rebuilt_with_per_user_statistics(upgraded: Memory) -> None:
    store = upgraded.store
    for user in ("ann", "bob"):
        keys = [
            r
            for r in store.list(RecordFilter(user), limit=100)
            if r.kind is not RecordKind.SENTENCE
        ]
        for query in ("beagle beach", "quartz countertops", "bakery Porto", "Rex"):
            want = bm25_reference([r.key_text for r in keys], query)
            got = dict(store.lexical_search(query, RecordFilter(user), 100))
            assert got == pytest.approx({keys[i].id: s for i, s in want.items()})
    hits = upgraded.search("quartz", user_id="bob", config="lexical")
    assert [h.message_id for h in hits] == ["b1"]


def test_history_gets_sessions_and_loses_deleted_text(upgraded: Memory, tmp_path: Path) -> None:
    conn = upgraded.store._conn  # type: ignore[attr-defined]
    first = upgraded.list(user_id="ann", limit=1)[0]
    assert [e.event for e in upgraded.history(first.id, user_id="ann")] == ["ADD", "UPDATE"]
    orphans = conn.execute(
        "SELECT old_text, new_text, session_id FROM history h WHERE NOT EXISTS "
        "(SELECT 1 FROM records r WHERE r.id = h.record_id)"
    ).fetchall()
    assert orphans and all(row[:2] == (None, None) for row in orphans)
    kept = conn.execute("SELECT DISTINCT session_id FROM history WHERE user_id = 'ann'")
    assert {r[0] for r in kept} >= {"s1", "s2"}
    upgraded.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("v1.db"))
    assert b"zebracorn" not in data


def test_upgraded_store_takes_new_writes(upgraded: Memory) -> None:
    upgraded.add(
        [{"role": "user", "content": "Rex chased a quartz pebble"}], user_id="ann", session_id="s1"
    )
    turns = upgraded.list(user_id="ann", session_id="s1", limit=100)
    assert [t.seq for t in turns] == [0, 1, 3, 4]  # after the last stored turn
    hits = upgraded.search("quartz pebble", user_id="ann", config="lexical")
    assert hits[0].record.text == "Rex chased a quartz pebble"
    upgraded.forget(user_id="ann", session_id="s1")
    assert [t.message_id for t in upgraded.list(user_id="ann")] == ["m5"]
