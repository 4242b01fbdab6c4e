"""The public Memory API on a real SQLite file with the fast deterministic embedder."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from engram import (
    HYBRID,
    HashEmbedder,
    InvalidInputError,
    Memory,
    NotFoundError,
    RecordFilter,
    RecordKind,
    ScopeError,
    SearchConfig,
    SqliteStore,
)  # fmt: skip

CHAT = [
    {"role": "user", "content": "I adopted a beagle named Rex last week.", "id": "m1"},
    {"role": "assistant", "content": "Congratulations on Rex! Beagles are lovely.", "id": "m2"},
    {"role": "user", "content": "I also started a new job at a bakery in Porto.", "id": "m3"},
    {"role": "assistant", "content": "A bakery job sounds delicious.", "id": "m4"},
]


def test_add_returns_turns_and_builds_round_keys(mem: Memory) -> None:
    turns = mem.add(CHAT, user_id="u1", session_id="s1", session_date="2024-05-08T13:56:00")
    assert [t.message_id for t in turns] == ["m1", "m2", "m3", "m4"]
    assert [t.seq for t in turns] == [0, 1, 2, 3]
    assert turns[0].timestamp == datetime(2024, 5, 8, 13, 56, tzinfo=UTC)
    rounds = mem.list(user_id="u1", kinds=["round"])
    assert [r.message_ids for r in rounds] == [("m1", "m2"), ("m3", "m4")]
    assert rounds[0].provenance == (turns[0].id, turns[1].id)


def test_add_is_idempotent(mem: Memory) -> None:
    first = mem.add(CHAT, user_id="u1", session_id="s1")
    again = mem.add(CHAT, user_id="u1", session_id="s1")
    assert [r.id for r in again] == [r.id for r in first]
    no_ids = [{"role": "user", "content": "ok"}, {"role": "user", "content": "ok"}]
    twice = mem.add(no_ids, user_id="u1", session_id="s2")
    assert len({r.id for r in twice}) == 2  # identical messages in one call are two turns
    assert [r.id for r in mem.add(no_ids, user_id="u1", session_id="s2")] == [r.id for r in twice]
    # m2 ("Congratulations on Rex! Beagles are lovely.") has two sentence keys
    assert mem.stats(user_id="u1").records == {"turn": 6, "round": 2, "window": 4, "sentence": 2}


def test_rounds_span_add_calls(mem: Memory) -> None:
    mem.add(CHAT[:1], user_id="u1", session_id="s1")
    mem.add(CHAT[1:2], user_id="u1", session_id="s1")
    [round_] = mem.list(user_id="u1", kinds=[RecordKind.ROUND])
    assert round_.message_ids == ("m1", "m2")
    assert [t.seq for t in mem.list(user_id="u1")] == [0, 1]


def test_search_finds_user_and_assistant_turns_with_explanations(mem: Memory) -> None:
    mem.add(CHAT, user_id="u1", session_id="s1")
    hits = mem.search("adopted a beagle named Rex", user_id="u1", limit=3)
    assert hits[0].message_id == "m1"
    assert set(hits[0].found_by) == {"lexical", "semantic", "sentence"}
    assert hits[0].sources["lexical"].rank == 1
    assert mem.search("delicious bakery", user_id="u1", limit=1)[0].message_id == "m4"
    rounds = SearchConfig(semantic=False, key_kinds=(RecordKind.TURN, RecordKind.ROUND))
    lexical = mem.search("Porto", user_id="u1", config=rounds)
    assert [h.message_id for h in lexical] == ["m3", "m4"]  # m4 via the round key only
    assert all(h.found_by == ("lexical",) for h in lexical)
    windows = mem.search("Porto", user_id="u1", config="lexical")
    assert windows[0].message_id == "m3"
    assert {h.message_id for h in windows} == {"m1", "m2", "m3", "m4"}  # via window keys
    assert len(mem.search("anything", user_id="u1", limit=2)) <= 2


def test_search_filters_and_sessions(mem: Memory) -> None:
    mem.add(CHAT[:2], user_id="u1", session_id="s1")
    mem.add(CHAT[2:], user_id="u1", session_id="s2")
    assert {h.record.session_id for h in mem.search("Rex", user_id="u1", session_id="s2")} == {"s2"}
    sessions = mem.search_sessions("bakery Porto job", user_id="u1", limit=2)
    assert sessions[0].session_id == "s2"
    assert len(sessions) == 2


def test_recency_weighting_prefers_recent(mem: Memory) -> None:
    msg = [{"role": "user", "content": "my favourite colour is green"}]
    mem.add(msg, user_id="u1", session_id="old", session_date="2020-01-01")
    mem.add(msg, user_id="u1", session_id="new", session_date="2024-01-01")
    cfg = SearchConfig(recency_weight=1.0, recency_half_life_days=30)
    hits = mem.search("favourite colour", user_id="u1", config=cfg, question_date="2024-01-02")
    assert hits[0].record.session_id == "new"
    assert hits[0].score > hits[1].score * 1.5


def test_users_are_isolated(mem: Memory) -> None:
    [mine] = mem.add(CHAT[:1], user_id="alice", session_id="s1")
    mem.add(CHAT[:1], user_id="bob", session_id="s1")
    assert all(h.record.user_id == "bob" for h in mem.search("beagle", user_id="bob"))
    assert all(r.user_id == "bob" for r in mem.list(user_id="bob"))
    for call in (
        lambda: mem.get(mine.id, user_id="bob"),
        lambda: mem.delete(mine.id, user_id="bob"),
        lambda: mem.history(mine.id, user_id="bob"),
        lambda: mem.update(mine.id, "hijacked", user_id="bob"),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert mem.forget(user_id="bob") == 1
    assert mem.get(mine.id, user_id="alice").text == CHAT[0]["content"]


def test_update_delete_history(mem: Memory) -> None:
    turns = mem.add(CHAT, user_id="u1", session_id="s1")
    mem.update(turns[2].id, "I started a new job at a library in Braga.", user_id="u1")
    assert mem.search("library Braga", user_id="u1", config="lexical")[0].record.id == turns[2].id
    deleted = mem.delete(turns[0].id, user_id="u1")
    assert len(deleted) == 4  # the turn, its round key and the two windows that contain it
    with pytest.raises(NotFoundError):
        mem.get(turns[0].id, user_id="u1")
    assert [e.event for e in mem.history(turns[2].id, user_id="u1")] == ["ADD", "UPDATE"]
    assert [e.event for e in mem.history(turns[0].id, user_id="u1")] == ["ADD", "DELETE"]
    with pytest.raises(NotFoundError):
        mem.delete("no-such-id", user_id="u1")


BAD_MESSAGES = [
    ([], "empty"),
    ("hello", "list"),
    ([{"role": "user", "content": "   "}], "whitespace"),
    ([{"role": "user", "content": ""}], "empty"),
    ([{"role": "user"}], "missing 'content'"),
    ([{"content": "hi"}], "missing 'role'"),
    ([{"role": "user", "content": 42}], "expected a string"),
    ([{"role": "user", "content": b"\xff\xfe bad"}], "UTF-8"),
    ([{"role": "user", "content": "bad \udcff surrogate"}], "Unicode"),
    ([{"role": "user", "content": "x" * 10_000_000}], "limit"),
    ([{"role": "user", "content": "hi", "timestamp": "yesterday"}], "ISO"),
    ([{"role": "user", "content": "hi", "metadata": {"x": object()}}], "JSON"),
    ([{"role": "user", "content": "hi", "colour": "red"}], "unknown fields"),
    ([{"role": "user", "content": "a", "id": "1"}, {"role": "user", "content": "b", "id": "1"}],
     "unique"),
    (["not an object"], "object"),
]  # fmt: skip


@pytest.mark.parametrize(("messages", "needle"), BAD_MESSAGES)
def test_bad_input_is_rejected_whole(mem: Memory, messages: object, needle: str) -> None:
    good = {"role": "user", "content": "this one is fine", "id": "good"}
    batch = [good, *messages] if isinstance(messages, list) and messages else messages
    with pytest.raises(InvalidInputError, match=needle):
        mem.add(batch, user_id="u1", session_id="s1")  # type: ignore[arg-type]
    assert mem.list(user_id="u1") == []


@pytest.mark.parametrize("user_id", [None, "", "   ", 7, "x" * 300])
def test_missing_or_bad_user_id(mem: Memory, user_id: object) -> None:
    with pytest.raises(ScopeError):
        mem.add(CHAT, user_id=user_id)  # type: ignore[arg-type]
    with pytest.raises(ScopeError):
        mem.search("x", user_id=user_id)  # type: ignore[arg-type]
    with pytest.raises(ScopeError):
        mem.list(user_id=user_id)  # type: ignore[arg-type]
    with pytest.raises(ScopeError):
        mem.forget(user_id=user_id)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": "5"}, {"limit": 10_000}, {"config": "nope"}, {"question_date": 5}],
)
def test_bad_search_arguments(mem: Memory, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        mem.search("hello", user_id="u1", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        mem.search("  ", user_id="u1")


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    with Memory(store=SqliteStore(path), embedder=HashEmbedder()) as m:
        m.add(CHAT, user_id="u1", session_id="s1")
    with Memory(store=SqliteStore(path), embedder=HashEmbedder()) as m:
        assert len(m.list(user_id="u1")) == 4
        top = m.search("adopted a beagle named Rex", user_id="u1", config="semantic")[0]
        assert top.message_id == "m1"
    with pytest.raises(Exception, match="dimension"):
        Memory(store=SqliteStore(path), embedder=HashEmbedder(dim=64)).search("x", user_id="u1")


def test_window_keys_span_calls_and_follow_updates(mem: Memory) -> None:
    for message in CHAT:  # one add per message: windows must still form across calls
        mem.add([message], user_id="u1", session_id="s1")
    windows = mem.list(user_id="u1", kinds=["window"])
    assert [w.message_ids for w in windows] == [
        ("m1", "m2"), ("m1", "m2", "m3"), ("m2", "m3", "m4"),
    ]  # fmt: skip
    turns = mem.list(user_id="u1")
    mem.update(turns[2].id, "I started a new job at a library in Braga.", user_id="u1")
    texts = [w.text for w in mem.list(user_id="u1", kinds=["window"])]
    assert sum("library in Braga" in t for t in texts) == 2
    assert not any("bakery in Porto" in t for t in texts)
    found = mem.search("Braga", user_id="u1", config="lexical")
    assert found[0].message_id == "m3"
    assert {h.message_id for h in found} == {"m1", "m2", "m3", "m4"}


def test_window_size_is_configurable(tmp_path: Path) -> None:
    with Memory(store=SqliteStore(tmp_path / "w.db"), embedder=HashEmbedder(), window_size=0) as m:
        m.add(CHAT, user_id="u1", session_id="s1")
        assert m.stats(user_id="u1").records == {"turn": 4, "round": 2, "sentence": 2}
    with pytest.raises(InvalidInputError):
        Memory(store=SqliteStore(":memory:"), embedder=HashEmbedder(), window_size=-1)


def test_sentence_keys_point_to_their_turn(mem: Memory) -> None:
    long = "We went camping at the lake last weekend. The kids caught three fish! What a trip."
    [turn, short] = mem.add(
        [{"role": "user", "content": long, "id": "t1"}, {"role": "user", "content": "Sounds fun!"}],
        user_id="u1", session_id="s1",
    )  # fmt: skip
    sentences = mem.list(user_id="u1", kinds=["sentence"])
    assert [k.text for k in sentences] == [
        "We went camping at the lake last weekend.", "The kids caught three fish!", "What a trip.",
    ]  # fmt: skip
    assert all(k.provenance == (turn.id,) and k.message_ids == ("t1",) for k in sentences)
    assert all(k.seq == turn.seq and k.timestamp == turn.timestamp for k in sentences)
    # sentence keys are vector keys only: the turn's own full-text row already has their words
    only_sentences = RecordFilter("u1", kinds=(RecordKind.SENTENCE,))
    assert mem.store.lexical_search("fish", only_sentences, 10) == []
    assert mem.search("fish", user_id="u1", config="lexical")[0].record.id == turn.id
    hits = mem.search("The kids caught three fish!", user_id="u1", config="semantic")
    assert hits[0].record.id == turn.id and "sentence" in hits[0].sources
    assert set(hits[0].matched_keys) >= {sentences[1].id}
    assert short.id not in {k.provenance[0] for k in sentences}


def test_update_replaces_sentence_keys_in_one_step(mem: Memory) -> None:
    [turn] = mem.add([{"role": "user", "content": "One. Two three four. Five six seven."}],
                     user_id="u1", session_id="s1")  # fmt: skip
    old = mem.list(user_id="u1", kinds=["sentence"])
    assert [k.text for k in old] == ["Two three four.", "Five six seven."]
    mem.update(turn.id, "I moved to Braga in May. I work at the library. I love it there.",
               user_id="u1")  # fmt: skip
    new = mem.list(user_id="u1", kinds=["sentence"])
    assert [k.text for k in new] == [
        "I moved to Braga in May.", "I work at the library.", "I love it there.",
    ]  # fmt: skip
    assert [e.event for e in mem.history(old[0].id, user_id="u1")] == ["ADD", "DELETE", "ADD"]
    assert mem.search("library", user_id="u1", config="semantic")[0].record.id == turn.id
    mem.update(turn.id, "Just one sentence now.", user_id="u1")
    assert mem.list(user_id="u1", kinds=["sentence"]) == []
    assert len(mem.delete(turn.id, user_id="u1")) == 1


class RecordingEmbedder(HashEmbedder):
    """The fake embedder, remembering every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return super().embed_batch(texts)


def test_embedding_retrievers_see_speaker_names_masked(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    with Memory(store=SqliteStore(tmp_path / "m.db"), embedder=embedder) as m:
        m.add([{"role": "user", "name": "Melanie", "content": "I painted a sunset."},
               {"role": "assistant", "name": "Caroline", "content": "Lovely colours!"}],
              user_id="u1", session_id="s1")  # fmt: skip
        assert m.store.speakers("u1") == {"Melanie", "Caroline"}
        hits = m.search("What did Melanie paint?", user_id="u1", limit=1)
        assert embedder.seen[-1] == "What did the person paint?"
        assert hits[0].record.name == "Melanie"  # the speaker factor still reads the name
        m.search("What did Melanie paint?", user_id="u1", config=HYBRID.with_(mask_speakers=False))
        assert embedder.seen[-1] == "What did Melanie paint?"
        m.add([{"role": "user", "name": "Gina", "content": "Hi"}], user_id="u1", session_id="s2")
        assert m.store.speakers("u1") == {"Melanie", "Caroline", "Gina"}  # follows writes
        assert m.store.speakers("u2") == frozenset()


def _assert_span_vectors_are_turn_means(mem: Memory) -> int:
    turns = {t.id: t for t in mem.list(user_id="u1")}
    spans = mem.list(user_id="u1", kinds=["round", "window"])
    for key in spans:
        rows = mem.store.get_vectors("u1", list(key.provenance))
        mean = rows.mean(axis=0)
        assert set(key.provenance) <= set(turns)
        np.testing.assert_allclose(
            mem.store.get_vectors("u1", [key.id])[0], mean / np.linalg.norm(mean), atol=1e-6
        )
    return len(spans)


def test_span_keys_get_the_mean_of_their_turn_vectors(mem: Memory) -> None:
    for message in CHAT:  # one add per message: windows take vectors of turns stored earlier
        mem.add([message], user_id="u1", session_id="s1")
    assert _assert_span_vectors_are_turn_means(mem) == 5  # 2 rounds, 3 windows
    turns = mem.list(user_id="u1")
    mem.update(turns[2].id, "I started a new job at a library in Braga.", user_id="u1")
    assert _assert_span_vectors_are_turn_means(mem) == 5
    new = mem.embedder.embed_batch(["I started a new job at a library in Braga."])[0]
    np.testing.assert_allclose(
        mem.store.get_vectors("u1", [turns[2].id])[0], new / np.linalg.norm(new), atol=1e-6
    )


def test_span_keys_can_embed_their_own_text(tmp_path: Path) -> None:
    with Memory(store=SqliteStore(tmp_path / "e.db"), embedder=HashEmbedder(),
                span_vectors="embed") as m:  # fmt: skip
        turns = m.add(CHAT, user_id="u1", session_id="s1")
        m.update(turns[0].id, "We adopted a beagle puppy. He is called Rex.", user_id="u1")
        keys = m.list(user_id="u1", kinds=["round", "window", "sentence"])
        assert {k.text for k in keys if k.kind is RecordKind.SENTENCE} >= {
            "We adopted a beagle puppy.", "He is called Rex.",
        }  # fmt: skip
        for key in keys:
            want = m.embedder.embed_batch([key.key_text])[0]
            np.testing.assert_allclose(
                m.store.get_vectors("u1", [key.id])[0], want / np.linalg.norm(want), atol=1e-6
            )
    with pytest.raises(InvalidInputError):
        Memory(store=SqliteStore(":memory:"), embedder=HashEmbedder(), span_vectors="max")  # type: ignore[arg-type]


def test_sentence_keys_can_be_switched_off(tmp_path: Path) -> None:
    with Memory(store=SqliteStore(tmp_path / "s.db"), embedder=HashEmbedder(),
                sentence_keys=False) as m:  # fmt: skip
        [turn] = m.add([{"role": "user", "content": "First one here. Second one here."}],
                       user_id="u1")  # fmt: skip
        m.update(turn.id, "Third one here. Fourth one here.", user_id="u1")
        assert "sentence" not in m.stats(user_id="u1").records
    with pytest.raises(InvalidInputError):
        Memory(store=SqliteStore(":memory:"), embedder=HashEmbedder(), sentence_keys=1)  # type: ignore[arg-type]


def test_time_aware_search_prefers_the_named_period(mem: Memory) -> None:
    msg = [{"role": "user", "content": "We had dinner at the ramen place downtown."}]
    mem.add(msg, user_id="u1", session_id="sat", session_date="2023-05-27T20:00:00Z")  # a Saturday
    mem.add(msg, user_id="u1", session_id="tue", session_date="2023-05-16T20:00:00Z")
    question = "Where did we have dinner last Saturday?"
    asked = "2023-05-30T23:40:00Z"
    plain = SearchConfig(semantic=False, fusion="weighted")
    tie = mem.search(question, user_id="u1", question_date=asked, config=plain)
    assert tie[0].score == pytest.approx(tie[1].score)  # same text: a tie without time
    timed = plain.with_(time_weight=1.0)
    hits = mem.search(question, user_id="u1", question_date=asked, config=timed)
    assert hits[0].record.session_id == "sat"
    assert hits[0].score == pytest.approx(2 * hits[1].score)
