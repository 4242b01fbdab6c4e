"""The contract every Store backend must pass (run against each factory in conftest)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from engram import (
    ConfigurationError,
    NotFoundError,
    RecordFilter,
    RecordKind,
    ScopeError,
    Store,
    StoreError,
)
from engram.types import MemoryRecord

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
DIM = 8


def rec(
    rid: str,
    text: str,
    *,
    user: str = "u1",
    session: str = "s1",
    seq: int = 0,
    kind: RecordKind = RecordKind.TURN,
    provenance: tuple[str, ...] = (),
) -> MemoryRecord:
    return MemoryRecord(
        id=rid, kind=kind, text=text, user_id=user, session_id=session, agent_id=None,
        role="user", name=None, seq=seq, timestamp=T0 + timedelta(minutes=seq), created_at=T0,
        provenance=provenance, message_ids=(f"m-{rid}",), metadata={"n": seq},
    )  # fmt: skip


def vec(*hot: int) -> np.ndarray:
    v = np.zeros((len(hot), DIM), dtype=np.float32)
    for row, col in enumerate(hot):
        v[row, col] = 1.0
    return v


@pytest.fixture
def filled(store: Store) -> Store:
    store.bind_embedder("test", DIM)
    store.add(
        [
            rec("a", "the quick brown fox", seq=0),
            rec("b", "jumped over the lazy dog", seq=1),
            rec("r", "quick fox\njumped dog", seq=0, kind=RecordKind.ROUND, provenance=("a", "b")),
            rec("c", "a fox in another session", session="s2"),
            rec("x", "the quick brown fox of user two", user="u2"),
        ],
        vec(0, 1, 2, 3, 0),
    )
    return store


def test_add_roundtrip_and_idempotent(filled: Store) -> None:
    [a] = filled.get_many("u1", ["a"])
    assert (a.text, a.kind, a.seq, a.message_ids, a.metadata) == (
        "the quick brown fox", RecordKind.TURN, 0, ("m-a",), {"n": 0},
    )  # fmt: skip
    assert a.timestamp == T0 and a.timestamp.tzinfo is not None
    again = filled.add([rec("a", "the quick brown fox"), rec("d", "new one", seq=2)], vec(0, 5))
    assert [r.id for r in again] == ["d"]
    assert len(filled.list(RecordFilter("u1"), limit=100)) == 5


def test_add_skips_repeated_and_taken_ids(filled: Store) -> None:
    batch = [rec("d", "first", seq=2), rec("d", "second", seq=3), rec("x", "user two's id", seq=4)]
    assert [r.id for r in filled.add(batch, vec(5, 6, 7))] == ["d"]
    [d] = filled.get_many("u1", ["d"])
    assert d.text == "first"
    assert filled.vector_search(vec(5)[0], RecordFilter("u1"), 1) == [("d", pytest.approx(1.0))]
    assert filled.vector_search(vec(7)[0], RecordFilter("u1"), 1)[0][1] == 0.0  # "x" not added
    assert [e.event for e in filled.history("u1", "d")] == ["ADD"]
    assert filled.get_many("u2", ["x"])[0].text == "the quick brown fox of user two"


def test_vector_search_after_many_small_writes(filled: Store) -> None:
    filled.vector_search(vec(0)[0], RecordFilter("u1"), 1)  # the user's vectors now in memory
    rng = np.random.default_rng(7)
    added = rng.standard_normal((150, DIM)).astype(np.float32)
    added /= np.linalg.norm(added, axis=1, keepdims=True)
    turns = RecordFilter("u1", kinds=(RecordKind.TURN,))
    filled.vector_search(added[0], turns, 1)  # a kind mask, cached before the next writes
    for i, v in enumerate(added):
        kind = RecordKind.WINDOW if i % 2 else RecordKind.TURN
        session = "s2" if i % 3 == 0 else "s1"
        filled.add([rec(f"g{i}", f"note {i}", seq=10 + i, kind=kind, session=session)], v[None, :])
    for i in (0, 77, 149):
        assert filled.vector_search(added[i], RecordFilter("u1"), 1)[0][0] == f"g{i}"
    assert len(filled.vector_search(added[0], RecordFilter("u1"), 500)) == 4 + 150
    found = {rid for rid, _ in filled.vector_search(added[0], turns, 500)}
    assert found == {"a", "b", "c", *(f"g{i}" for i in range(0, 150, 2))}
    in_s2 = {
        rid for rid, _ in filled.vector_search(added[0], RecordFilter("u1", session_id="s2"), 500)
    }
    assert in_s2 == {"c", *(f"g{i}" for i in range(0, 150, 3))}


def test_get_refs_match_the_records_and_keep_scope(filled: Store) -> None:
    refs = filled.get_refs("u1", ["r", "x", "a", "nope"])
    assert [r.id for r in refs] == ["r", "a"]  # in order; other users' and unknown ids absent
    for ref, record in zip(refs, filled.get_many("u1", ["r", "a"]), strict=True):
        assert (ref.kind, ref.provenance, ref.name, ref.timestamp, ref.text) == (
            record.kind, record.provenance, record.name, record.timestamp, record.text,
        )  # fmt: skip
    assert refs[0].provenance == ("a", "b") and refs[0].kind is RecordKind.ROUND
    assert filled.get_refs("u2", ["a"]) == []


def test_scope_is_enforced_by_the_store(filled: Store) -> None:
    assert filled.get_many("u1", ["x"]) == []
    assert [r.id for r in filled.list(RecordFilter("u2"), limit=10)] == ["x"]
    assert all(rid != "x" for rid, _ in filled.lexical_search("fox", RecordFilter("u1"), 10))
    assert all(rid != "x" for rid, _ in filled.vector_search(vec(0)[0], RecordFilter("u1"), 10))
    with pytest.raises(NotFoundError):
        filled.delete("u1", "x")
    with pytest.raises(NotFoundError):
        filled.update("u1", [("a", "mine"), ("x", "hijack")], vec(0, 0))
    assert filled.get_many("u1", ["a"])[0].text == "the quick brown fox"  # all or nothing
    with pytest.raises(NotFoundError):
        filled.history("u1", "x")
    assert filled.forget("u1") == 4
    assert [r.id for r in filled.list(RecordFilter("u2"), limit=10)] == ["x"]


def test_list_filters_and_order(filled: Store) -> None:
    turns = filled.list(RecordFilter("u1", kinds=(RecordKind.TURN,)), limit=10)
    assert [r.id for r in turns] == ["a", "b", "c"]
    assert [r.id for r in filled.list(RecordFilter("u1", session_id="s2"), limit=10)] == ["c"]
    assert [r.id for r in turns][1:] == [r.id for r in filled.list(
        RecordFilter("u1", kinds=(RecordKind.TURN,)), limit=10, offset=1)]  # fmt: skip


def test_list_pages_by_keyset(filled: Store) -> None:
    everything = filled.list(RecordFilter("u1"), limit=10)
    assert [r.id for r in everything] == ["a", "r", "b", "c"]  # session, seq, kind desc
    pages, after = [], None
    while True:
        page = filled.list(RecordFilter("u1"), limit=1, after=after)
        if not page:
            break
        pages.append(page[0].id)
        after = page[-1]
    assert pages == ["a", "r", "b", "c"]
    first = filled.list(RecordFilter("u1"), limit=2)  # a, r
    filled.delete("u1", "r")  # the anchor of the next page is gone: nothing skipped, no repeat
    filled.add([rec("z", "a late turn", seq=5)], vec(2))
    rest = filled.list(RecordFilter("u1"), limit=10, after=first[-1])
    assert [r.id for r in rest] == ["b", "z", "c"]
    # an anchor is a position only: one that is not stored, or another user's, reveals nothing
    assert [
        r.id for r in filled.list(RecordFilter("u2"), limit=10, after=rec("q", "", session="s0"))
    ] == ["x"]
    # an anchor that is not (or no longer) the user's: the records tied with it come after it
    assert [r.id for r in filled.list(RecordFilter("u2"), limit=10, after=first[0])] == ["x"]


def test_lexical_search_ranks_by_bm25(filled: Store) -> None:
    hits = filled.lexical_search("lazy dog", RecordFilter("u1"), 10)
    assert hits[0][0] in {"b", "r"} and {rid for rid, _ in hits} == {"b", "r"}
    assert all(s > 0 for _, s in hits)
    only_turns = filled.lexical_search("fox", RecordFilter("u1", kinds=(RecordKind.TURN,)), 10)
    assert {rid for rid, _ in only_turns} == {"a", "c"}
    assert filled.lexical_search("   ", RecordFilter("u1"), 10) == []
    assert filled.lexical_search('fox" OR "x', RecordFilter("u1"), 10)  # no FTS syntax errors


def test_vector_search_exact_cosine(filled: Store) -> None:
    hits = filled.vector_search(vec(1)[0], RecordFilter("u1"), 2)
    assert hits[0] == ("b", pytest.approx(1.0))
    assert len(hits) == 2
    in_s2 = filled.vector_search(vec(1)[0], RecordFilter("u1", session_id="s2"), 5)
    assert [rid for rid, _ in in_s2] == ["c"]
    rounds = filled.vector_search(vec(2)[0], RecordFilter("u1", kinds=(RecordKind.ROUND,)), 5)
    assert [rid for rid, _ in rounds] == ["r"]


def test_vector_search_sees_writes(filled: Store) -> None:
    filled.vector_search(vec(0)[0], RecordFilter("u1"), 5)  # warm any cache
    turns = RecordFilter("u1", kinds=(RecordKind.TURN,))
    assert filled.vector_search(vec(6)[0], turns, 9)[0][1] == 0.0  # the same query, cached...
    filled.add([rec("e", "fresh", seq=3)], vec(6))
    assert filled.vector_search(vec(6)[0], turns, 1) == [("e", 1.0)]  # ...then a write
    assert filled.vector_search(vec(6)[0], RecordFilter("u1"), 1)[0][0] == "e"
    filled.update("u1", [("e", "fresher")], vec(7))
    assert filled.vector_search(vec(7)[0], RecordFilter("u1"), 1)[0][0] == "e"
    filled.delete("u1", "e")
    assert all(rid != "e" for rid, _ in filled.vector_search(vec(7)[0], RecordFilter("u1"), 9))


def test_update_reindexes_and_keeps_history(filled: Store) -> None:
    [new] = filled.update("u1", [("a", "a slow purple turtle")], vec(4))
    assert new.text == "a slow purple turtle"
    assert [rid for rid, _ in filled.lexical_search("turtle", RecordFilter("u1"), 5)] == ["a"]
    assert filled.lexical_search("brown", RecordFilter("u1", kinds=(RecordKind.TURN,)), 5) == []
    events = filled.history("u1", "a")
    assert [e.event for e in events] == ["ADD", "UPDATE"]
    assert (events[1].old_text, events[1].new_text) == ("the quick brown fox", new.text)


def test_get_vectors_in_order_and_scoped(filled: Store) -> None:
    np.testing.assert_array_equal(filled.get_vectors("u1", ["b", "a", "c"]), vec(1, 0, 3))
    assert filled.get_vectors("u1", []).shape == (0, DIM)
    with pytest.raises(NotFoundError):
        filled.get_vectors("u1", ["a", "x"])  # "x" belongs to u2
    with pytest.raises(NotFoundError):
        filled.get_vectors("u2", ["a"])


def test_update_can_replace_derived_keys_in_one_transaction(filled: Store) -> None:
    sentence = rec("s", "a quick fox", kind=RecordKind.SENTENCE, provenance=("a",))
    filled.add([sentence], vec(5))
    fresh = [
        rec(f"s{i}", text, kind=RecordKind.SENTENCE, provenance=("a",))
        for i, text in enumerate(["a slow turtle", "a purple shell"])
    ]
    [new] = filled.update(
        "u1", [("a", "a slow turtle. a purple shell")], vec(4), drop=["s"], add=fresh,
        add_vectors=vec(6, 7),
    )  # fmt: skip
    assert new.text == "a slow turtle. a purple shell"
    assert filled.get_many("u1", ["s", "s0", "s1"]) == fresh
    assert [e.event for e in filled.history("u1", "s")] == ["ADD", "DELETE"]
    sentences = RecordFilter("u1", kinds=(RecordKind.SENTENCE,))
    assert [rid for rid, _ in filled.vector_search(vec(7)[0], sentences, 1)] == ["s1"]
    assert filled.lexical_search("purple", sentences, 5) == []  # vector-only keys
    assert {r.id for r in filled.derived_from("u1", "a")} == {"r", "s0", "s1"}
    assert set(filled.delete("u1", "a")) == {"a", "r", "s0", "s1"}


def test_failed_update_changes_nothing(filled: Store) -> None:
    extra = rec("n", "new key", kind=RecordKind.SENTENCE, provenance=("b",))
    with pytest.raises(NotFoundError):  # a key to drop that this user does not have
        filled.update("u1", [("b", "changed")], vec(4), drop=["x"], add=[extra],
                      add_vectors=vec(5))  # fmt: skip
    with pytest.raises(ScopeError):  # a key to add that belongs to another user
        filled.update("u1", [("b", "changed")], vec(4), add=[rec("n", "k", user="u2")],
                      add_vectors=vec(5))  # fmt: skip
    with pytest.raises(StoreError):  # two keys, one vector
        filled.update("u1", [("b", "changed")], vec(4), add=[extra, rec("m", "k")],
                      add_vectors=vec(5))  # fmt: skip
    assert filled.get_many("u1", ["b"])[0].text == "jumped over the lazy dog"
    assert filled.get_many("u1", ["n", "m"]) == []
    assert filled.get_many("u2", ["x"])[0].text == "the quick brown fox of user two"


def test_delete_cascades_to_rounds_and_index_rows(filled: Store) -> None:
    deleted = filled.delete("u1", "a")
    assert set(deleted) == {"a", "r"}
    assert filled.get_many("u1", ["a", "r", "b"])[0].id == "b"
    assert filled.lexical_search("quick", RecordFilter("u1"), 10) == []
    assert [e.event for e in filled.history("u1", "a")] == ["ADD", "DELETE"]


def test_forget_session_and_user(filled: Store) -> None:
    assert filled.forget("u1", session_id="s2") == 1
    assert {r.id for r in filled.list(RecordFilter("u1"), limit=10)} == {"a", "b", "r"}
    assert filled.forget("u1") == 3
    assert filled.list(RecordFilter("u1"), limit=10) == []
    assert filled.lexical_search("fox", RecordFilter("u1"), 10) == []
    assert filled.vector_search(vec(0)[0], RecordFilter("u1"), 10) == []
    with pytest.raises(NotFoundError):
        filled.history("u1", "a")
    assert filled.stats("u1").records == {}
    assert filled.stats().records == {"turn": 1}


def test_failed_add_writes_nothing(filled: Store) -> None:
    before = len(filled.list(RecordFilter("u1"), limit=100))
    with pytest.raises(StoreError):
        filled.add([rec("n1", "ok", seq=5), rec("n2", "bad", seq=6)], vec(0))  # 2 records, 1 vec
    broken = rec("n3", "bad metadata", seq=7)
    object.__setattr__(broken, "metadata", {"x": object()})
    with pytest.raises((StoreError, TypeError)):
        filled.add([rec("n4", "fine", seq=8), broken], vec(0, 1))
    assert len(filled.list(RecordFilter("u1"), limit=100)) == before
    assert filled.get_many("u1", ["n1", "n2", "n3", "n4"]) == []


def test_embedder_binding(filled: Store) -> None:
    filled.bind_embedder("test", DIM)
    with pytest.raises(ConfigurationError):
        filled.bind_embedder("test", DIM + 1)
    with pytest.raises(ConfigurationError):
        filled.bind_embedder("another-model", DIM)


def test_stats(filled: Store) -> None:
    stats = filled.stats("u1")
    assert stats.records == {"turn": 3, "round": 1}
    assert (stats.users, stats.sessions, stats.dim, stats.embedder) == (1, 2, DIM, "test")
    assert filled.stats().users == 2


def test_last_turns_and_derived_from(filled: Store) -> None:
    assert [r.id for r in filled.last_turns("u1", "s1", 5)] == ["a", "b"]
    assert [r.id for r in filled.last_turns("u1", "s1", 1)] == ["b"]
    assert filled.last_turns("u2", "s1", 5)[0].id == "x"
    assert filled.last_turns("u1", "nope", 3) == []
    assert [r.id for r in filled.derived_from("u1", "a")] == ["r"]
    assert filled.derived_from("u2", "a") == []


def test_hard_delete_leaves_no_readable_text(tmp_path: Path) -> None:
    from engram import SqliteStore

    path = tmp_path / "secret.db"
    s = SqliteStore(path)
    s.bind_embedder("test", DIM)
    s.add([rec("a", "my secret passphrase zebracorn"), rec("b", "harmless")], vec(0, 1))
    s.forget("u1")
    s.close()
    assert b"zebracorn" not in path.read_bytes()


def test_matrix_cache_is_bounded_and_correct() -> None:
    from engram import SqliteStore

    s = SqliteStore(":memory:", cached_users=2)
    s.bind_embedder("test", DIM)
    for i, user in enumerate(["u1", "u2", "u3"]):
        s.add([rec(f"r{i}", "text", user=user)], vec(i))
    for i, user in enumerate(["u1", "u2", "u3", "u1"]):
        assert s.vector_search(vec(i % 3)[0], RecordFilter(user), 1)[0][0] == f"r{i % 3}"
    assert len(s._matrices) == 2


def test_writes_extend_a_loaded_matrix_in_place() -> None:
    """A search after a write must not reload the user's vectors from the database: a write of
    several records moves the user's generation by one, and the cached matrix follows it."""
    from engram import SqliteStore

    s = SqliteStore(":memory:")
    s.bind_embedder("test", DIM)
    s.add([rec("a", "one"), rec("b", "two", seq=1)], vec(0, 1))
    s.vector_search(vec(0)[0], RecordFilter("u1"), 1)
    loaded = s._matrices.peek("u1")
    s.add(
        [rec("c", "three", seq=2), rec("d", "four", seq=3), rec("e", "five", seq=4)], vec(2, 3, 4)
    )
    assert s.vector_search(vec(4)[0], RecordFilter("u1"), 1)[0][0] == "e"
    assert loaded is not None and s._matrices.peek("u1") is loaded
    assert loaded.matrix.shape[0] == 5
    assert s.speakers("u1") == frozenset()
    s.add([replace(rec("f", "six", seq=5), name="Ann")], vec(5))
    assert s._speakers.peek("u1") == {"Ann"}  # carried over the write, not dropped
    assert s.speakers("u1") == {"Ann"}
    assert s._matrices.peek("u1") is loaded and loaded.matrix.shape[0] == 6


def test_concurrent_writes_and_searches_on_one_store() -> None:
    """Threads sharing one store: every write lands, every search sees a consistent matrix."""
    from concurrent.futures import ThreadPoolExecutor

    from engram import SqliteStore

    s = SqliteStore(":memory:")
    s.bind_embedder("test", DIM)
    s.add([rec("seed", "seed")], vec(0))
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((4, 40, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)  # unit vectors, as stored

    def work(t: int) -> None:
        for i in range(40):
            pair = [rec(f"t{t}-{i}-{j}", "x", seq=1000 * t + 2 * i + j) for j in (0, 1)]
            s.add(pair, np.vstack([vectors[t, i], vectors[t, i]]))
            hits = s.vector_search(vectors[t, i], RecordFilter("u1", kinds=(RecordKind.TURN,)), 2)
            assert {rid for rid, _ in hits} == {f"t{t}-{i}-0", f"t{t}-{i}-1"}

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(work, t) for t in range(4)]:
            future.result()
    assert len(s.vector_search(vec(0)[0], RecordFilter("u1"), 1000)) == 1 + 4 * 40 * 2


def test_conditional_add_checks_the_session_tail(filled: Store) -> None:
    from engram import ConflictError
    from engram.store.base import SessionTail

    a, b = ("a", "the quick brown fox"), ("b", "jumped over the lazy dog")
    tail = SessionTail("u1", "s1", (a, b))
    before = filled.stats("u1")
    for stale in (
        SessionTail("u1", "s1", (a,)),  # read before "b" was added
        SessionTail("u1", "s1", (a, ("b", "an older text"))),  # "b" was edited since
        SessionTail("u1", "s1", ()),  # read when the session was empty
    ):
        with pytest.raises(ConflictError):
            filled.add([rec("n", "new turn", seq=2)], vec(4), expect=stale)
    with pytest.raises(ConflictError):  # the right tail, but an id that is stored
        filled.add([rec("a", "again", seq=2)], vec(4), expect=tail)
    assert filled.stats("u1") == before
    assert [r.id for r in filled.add([rec("n", "new turn", seq=2)], vec(4), expect=tail)] == ["n"]
    assert filled.add([rec("m", "x", session="fresh")], vec(5), expect=SessionTail("u1", "fresh"))


def test_conditional_update_checks_its_sources(filled: Store) -> None:
    from engram import ConflictError
    from engram.store.base import Sources

    texts = {"a": "the quick brown fox", "b": "jumped over the lazy dog"}
    for stale in (Sources({**texts, "b": "older"}, frozenset({"r"})), Sources(texts, frozenset())):
        with pytest.raises(ConflictError):
            filled.update("u1", [("a", "changed")], vec(5), expect=stale)
    assert filled.get_many("u1", ["a"])[0].text == "the quick brown fox"
    updated = filled.update(
        "u1", [("a", "changed")], vec(5), expect=Sources(texts, frozenset({"r"}))
    )
    assert updated[0].text == "changed"


def test_lexical_scores_use_the_users_own_statistics(filled: Store) -> None:
    before = filled.lexical_search("quick fox", RecordFilter("u1"), 10)
    filled.add(
        [rec(f"z{i}", "quick quick fox fox", user="u2", seq=i) for i in range(30)], vec(*[1] * 30)
    )
    assert filled.lexical_search("quick fox", RecordFilter("u1"), 10) == before


def test_delete_blanks_the_history_texts(filled: Store) -> None:
    filled.delete("u1", "a")
    events = filled.history("u1", "a")
    assert [e.event for e in events] == ["ADD", "DELETE"]
    assert all(e.old_text is None and e.new_text is None for e in events)
    assert all(e.old_text is None and e.new_text is None for e in filled.history("u1", "r"))
