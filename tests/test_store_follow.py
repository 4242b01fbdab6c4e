"""Two stores on one SQLite file, as two server workers (processes) have: what one inserts, the
other's cached matrix and ref memo follow by reading only the new rows; any other write (an
update, a delete, a forget), or a delete of its own, makes it load everything again. Either way
its searches answer exactly what a store opened fresh on the file answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram import Memory
from engram.embed.fake import HashEmbedder
from engram.store.sqlite import SqliteStore

USER = "u"
QUERIES = ["garden tomatoes", "piano lessons", "trip to Lyon", "the cat", "new job at the bank"]


def memory(path: Path) -> Memory:
    return Memory(store=SqliteStore(path), embedder=HashEmbedder())


def add(mem: Memory, session: str, texts: list[str]) -> None:
    mem.add([{"role": "user", "content": t} for t in texts], user_id=USER, session_id=session)


def ranked(mem: Memory) -> list[list[tuple[str, float]]]:
    return [
        [(h.record.id, round(h.score, 9)) for h in mem.search(q, user_id=USER, limit=10)]
        for q in QUERIES
    ]


def same_as_fresh(mem: Memory, path: Path) -> None:
    fresh = memory(path)
    try:
        assert ranked(mem) == ranked(fresh)
    finally:
        fresh.close()


def cached(mem: Memory) -> tuple[object, object]:
    store = mem.store
    assert isinstance(store, SqliteStore)
    return store._matrices.peek(USER), store._refs._memos.peek(USER)


@pytest.fixture
def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "shared.db"
    a, b = memory(path), memory(path)
    add(a, "s1", ["I grow tomatoes in the garden.", "My piano lessons start in May."])
    a.search("garden", user_id=USER)  # a's matrix and memo are loaded
    yield path, a, b
    a.close()
    b.close()


def test_inserts_of_another_store_are_followed(pair) -> None:  # type: ignore[no-untyped-def]
    path, a, b = pair
    matrix, memo = cached(a)
    for n in range(3):
        add(b, f"b{n}", [f"We took a trip to Lyon, day {n}.", "The cat sat on the piano."])
        add(a, "s1", [f"A new job at the bank, week {n}."])  # a's own inserts, between b's
        hits = a.search("trip to Lyon", user_id=USER, limit=10)
        assert any("Lyon" in h.record.text for h in hits)
    assert cached(a) == (matrix, memo)  # followed: the same objects, never loaded again
    same_as_fresh(a, path)


@pytest.mark.parametrize("write", ["update", "delete", "forget-session", "forget-user"])
def test_any_other_write_of_another_store_loads_again(pair, write: str) -> None:  # type: ignore[no-untyped-def]
    path, a, b = pair
    matrix, _ = cached(a)
    add(b, "b1", ["We took a trip to Lyon.", "The cat sat on the piano."])
    turn = b.list(user_id=USER, session_id="b1")[0]
    if write == "update":
        b.update(turn.id, "We took a trip to Paris instead.", user_id=USER)
    elif write == "delete":
        b.delete(turn.id, user_id=USER)
    elif write == "forget-session":
        b.forget(user_id=USER, session_id="b1")
    else:
        b.forget(user_id=USER)
        add(b, "b2", ["Starting over: the garden again."])  # a new generation row
    texts = [h.record.text for h in a.search("trip to Lyon", user_id=USER, limit=10)]
    assert "We took a trip to Lyon." not in texts
    assert cached(a)[0] is not matrix  # loaded again
    same_as_fresh(a, path)


def test_after_a_delete_of_its_own_a_store_loads_again(pair) -> None:  # type: ignore[no-untyped-def]
    path, a, b = pair
    add(a, "s2", ["The last thing I said."])
    newest = a.list(user_id=USER, session_id="s2")[0]
    a.delete(newest.id, user_id=USER)  # the highest rowids are free again: SQLite may reuse them
    a.search("garden", user_id=USER)
    matrix, _ = cached(a)
    add(b, "b1", ["Another thing, said elsewhere."])
    texts = [h.record.text for h in a.search("another thing said", user_id=USER, limit=10)]
    assert "Another thing, said elsewhere." in texts
    assert cached(a)[0] is not matrix
    same_as_fresh(a, path)
