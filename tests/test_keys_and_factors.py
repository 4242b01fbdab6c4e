"""Pure pieces added for sentence keys and scoring: sentence splitting, sentence key records,
span vectors, the question factor, and the SearchConfig checks for them."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from engram import InvalidInputError, MemoryRecord, RecordKind, SearchConfig
from engram.read.fusion import asks_question, mask_names, question_factor
from engram.write import build_sentences, record_id, span_vectors, split_sentences
from engram.write.ingest import MAX_SENTENCE_KEYS, build_turns, speakers_in_text
from engram.write.messages import Message

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def turn(rid: str, text: str, name: str | None = "Ann") -> MemoryRecord:
    return MemoryRecord(
        id=rid, kind=RecordKind.TURN, text=text, user_id="u", session_id="s", agent_id=None,
        role="user", name=name, seq=4, timestamp=T0, created_at=T0, message_ids=(f"m-{rid}",),
        metadata={"source": "chat"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We went camping. The kids loved it!", ["We went camping.", "The kids loved it!"]),
        ("Hi! How are you doing today?", ["How are you doing today?"]),  # "Hi!" is too short
        ("Dr. Smith saw us. We waved at him.", ["Dr. Smith saw us.", "We waved at him."]),
        ("It was fun. e.g. the lake was warm", ["It was fun. e.g. the lake was warm"]),
        ("first line here\nsecond line here", ["first line here", "second line here"]),
        ('She said "go now." Then we left early.', ['She said "go now."', "Then we left early."]),
        ("no end mark at all here", ["no end mark at all here"]),
        ("Ok. Yes.", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_caps_the_number_of_keys() -> None:
    text = " ".join(f"This is sentence number {i}." for i in range(40))
    parts = split_sentences(text)
    assert len(parts) <= MAX_SENTENCE_KEYS
    assert " ".join(parts) == text  # runs of consecutive sentences, nothing lost or reordered
    assert split_sentences(text, most=40) == [f"This is sentence number {i}." for i in range(40)]


def test_build_sentences() -> None:
    one, two = (
        turn("t1", "Only one sentence here."),
        turn("t2", "We moved to Braga. I love it here."),
    )
    keys = build_sentences([one, two], T0)
    assert [k.text for k in keys] == ["We moved to Braga.", "I love it here."]
    assert [k.key_text for k in keys] == ["Ann: We moved to Braga.", "Ann: I love it here."]
    for i, k in enumerate(keys):
        assert k.kind is RecordKind.SENTENCE and k.provenance == ("t2",)
        assert k.id == record_id("u", "s", RecordKind.SENTENCE, f"t2#{i}")
        assert (k.seq, k.timestamp, k.message_ids, k.name) == (4, T0, ("m-t2",), "Ann")
        assert k.metadata == {}
    assert build_sentences([two], T0) == keys  # deterministic ids: idempotent re-adds


def test_span_vectors_are_normalised_means() -> None:
    a, b, c = (np.eye(3, dtype=np.float32)[i] for i in range(3))
    spans = [
        MemoryRecord(
            id=f"w{i}",
            kind=RecordKind.WINDOW,
            text="",
            user_id="u",
            session_id="s",
            agent_id=None,
            role=None,
            name=None,
            seq=0,
            timestamp=T0,
            created_at=T0,
            provenance=prov,
        )
        for i, prov in enumerate([("a", "b"), ("a", "b", "c"), ("a",)])
    ]
    out = span_vectors(spans, {"a": a, "b": b, "c": c}, 3)
    np.testing.assert_allclose(out[0], [2**-0.5, 2**-0.5, 0], atol=1e-7)
    np.testing.assert_allclose(out[1], [3**-0.5] * 3, atol=1e-7)
    np.testing.assert_allclose(out[2], a)
    assert out.dtype == np.float32
    assert span_vectors([], {}, 3).shape == (0, 3)
    opposite = span_vectors(spans[:1], {"a": a, "b": -a}, 3)  # a zero mean stays zero, no NaN
    np.testing.assert_array_equal(opposite, np.zeros((1, 3), dtype=np.float32))


@pytest.mark.parametrize(
    ("text", "asks"),
    [("What's your best camping memory?", True), ("Wow! Where was that?  ", True),
     ("We went camping. Fun?! Yes.", False), ("", False)],
)  # fmt: skip
def test_question_factor(text: str, asks: bool) -> None:
    assert asks_question(text) is asks
    assert question_factor(text, penalty=0.2) == pytest.approx(0.8 if asks else 1.0)
    assert question_factor(text, penalty=0.0) == 1.0


def test_search_config_checks_the_new_fields() -> None:
    assert SearchConfig(lexical=False, semantic=False, sentence=True).sentence
    assert not SearchConfig().mask_speakers
    with pytest.raises(InvalidInputError, match="retriever"):
        SearchConfig(lexical=False, semantic=False, sentence=False)
    for bad in (-0.1, 1.0):
        with pytest.raises(InvalidInputError, match="question_penalty"):
            SearchConfig(question_penalty=bad)


@pytest.mark.parametrize(
    ("query", "names", "masked"),
    [
        ("What did Melanie paint?", ["Melanie"], "What did the person paint?"),
        ("What did Melanie's kids like?", ["Melanie"], "What did the person kids like?"),
        (
            "Will May come? You will see in may.",
            ["May"],
            "Will the person come? You will see in may.",
        ),
        (
            "Did Jon Smith meet Gina?",
            ["Jon Smith", "Gina"],
            "Did the person the person meet the person?",
        ),
        ("Melanoma and Melanie", ["Melanie"], "Melanoma and the person"),  # whole words only
        ("Where does Sam live?", [], "Where does Sam live?"),
        ("Where does A live?", ["A"], "Where does A live?"),  # one-letter words are left alone
    ],
)
def test_mask_names(query: str, names: list[str], masked: str) -> None:
    assert mask_names(query, names) == masked


def _messages(*contents: str, name: str | None = None) -> list[Message]:
    return [Message(role="user", content=c, name=name) for c in contents]


@pytest.mark.parametrize(
    ("contents", "names"),
    [
        (["Caroline: I went to a group.", "Melanie: That's great!"], ["Caroline", "Melanie"]),
        (["Mary Ann Lee: hi there", "Bo: hey"], ["Mary Ann Lee", "Bo"]),
        (["Caroline: I went.", "and then nothing"], [None, None]),  # not every message
        (["Reminder: buy milk"], [None]),  # a lone message is never a transcript
        (["Paris: what to see?"], [None]),
        (["Note: call Bo.", "Update: done."], [None, None]),  # labels, not speakers
        (["Caroline:no space", "Bo: hi"], [None, None]),
        (["Day 1: Rome", "Day 2: Florence"], [None, None]),
        (["caroline: lower case", "bo: hi"], [None, None]),
        (["Ann: a", "Bo:   "], [None, None]),  # nothing after the colon
    ],
)
def test_speakers_in_text(contents: list[str], names: list[str | None]) -> None:
    found = speakers_in_text(_messages(*contents))
    assert [None if m is None else m.group(1) for m in found] == names


def test_a_named_message_keeps_its_name_and_text() -> None:
    messages = [*_messages("Ann: hello", "Bo: hi"), *_messages("Cy: yo", name="Cyrus")]
    found = speakers_in_text(messages)
    assert [None if m is None else m.group(1) for m in found] == ["Ann", "Bo", None]
    now = datetime(2023, 5, 1, tzinfo=UTC)
    turns = build_turns(
        [(m, f"k{i}") for i, m in enumerate(messages)], user_id="u", session_id="s",
        agent_id=None, first_seq=0, default_time=now, now=now,
    )  # fmt: skip
    assert [(t.name, t.text, t.key_text) for t in turns] == [
        ("Ann", "hello", "Ann: hello"),
        ("Bo", "hi", "Bo: hi"),
        ("Cyrus", "Cy: yo", "Cyrus: Cy: yo"),
    ]


def test_role_weight_ranks_the_role_a_question_asks_about_first() -> None:
    from engram import HashEmbedder, Memory

    with Memory.open(":memory:", embedder=HashEmbedder()) as memory:
        memory.add(
            [
                {"role": "assistant", "content": "Bikes for commuting: a bike with fenders helps."},
                {"role": "user", "content": "I bought a bike for commuting."},
            ],
            user_id="u",
        )
        plain = SearchConfig(semantic=False)
        ask = "what bike for commuting did I buy"
        boosted = [h.record.role for h in memory.search(ask, user_id="u", config=plain.with_(
            role_weight=5.0))]  # fmt: skip
        assert boosted[0] == "user"
        you = [h.record.role for h in memory.search("what bike for commuting did you suggest",
               user_id="u", config=plain.with_(role_weight=5.0, role_depth=1))]  # fmt: skip
        assert you[0] == "assistant"
        with pytest.raises(InvalidInputError):
            plain.with_(role_depth=0)


def test_sentence_policy_for_long_assistant_turns() -> None:
    from engram.write.ingest import SentencePolicy

    now = datetime(2023, 5, 1, tzinfo=UTC)
    text = " ".join(f"Sentence number {i} says something." for i in range(10))
    turns = [
        MemoryRecord(id=f"{role}-turn", kind=RecordKind.TURN, text=text, user_id="u",
                     session_id="s", agent_id=None, role=role, name=None, seq=0, timestamp=now,
                     created_at=now)
        for role in ("user", "assistant")
    ]  # fmt: skip
    every = build_sentences(turns, now)
    assert len(every) == 20
    capped = build_sentences(turns, now, SentencePolicy(long_words=20, long_keys=3))
    assert [k.provenance[0] for k in capped].count("assistant-turn") == 3
    assert [k.provenance[0] for k in capped].count("user-turn") == 10
    assert [k.text for k in capped if k.provenance[0] == "assistant-turn"] == [
        "Sentence number 0 says something.", "Sentence number 1 says something.",
        "Sentence number 2 says something.",
    ]  # fmt: skip
    none = build_sentences(turns, now, SentencePolicy(long_words=20, long_keys=0))
    assert {k.provenance[0] for k in none} == {"user-turn"}
    short = build_sentences(turns, now, SentencePolicy(long_words=100, long_keys=0))
    assert len(short) == 20  # not long enough to be capped


def test_anchored_window_falls_back_to_the_latest_memory() -> None:
    from engram.read.retrieve import anchored_window

    now = datetime(2026, 12, 2, tzinfo=UTC)
    latest = datetime(2023, 5, 30, tzinfo=UTC)
    window = anchored_window("What did I buy 2 weeks ago?", now, latest)
    assert window is not None and window.start.year == 2023 and window.end <= latest
    recent = datetime(2026, 11, 30, tzinfo=UTC)  # a memory inside the window: no fallback
    assert anchored_window("What did I buy 2 weeks ago?", now, recent) == anchored_window(
        "What did I buy 2 weeks ago?", now, None
    )
    assert anchored_window("What did I buy?", now, latest) is None


def test_time_fallback_boosts_the_old_conversation_asked_about_without_a_date() -> None:
    from engram import HashEmbedder, Memory

    with Memory.open(":memory:", embedder=HashEmbedder()) as memory:
        for day, text in ((2, "We went hiking at the lake."), (20, "We went hiking in the hills."),
                          (27, "After the hike we baked bread.")):  # fmt: skip
            memory.add([{"role": "user", "content": text}], user_id="u", session_id=f"s{day}",
                       session_date=datetime(2023, 5, day, tzinfo=UTC))  # fmt: skip
        config = SearchConfig(semantic=False, time_weight=1.0, time_tolerance_days=0.0)
        ask = "Where did we go hiking last week?"
        before = memory.search(ask, user_id="u", config=config)
        after = memory.search(ask, user_id="u", config=config.with_(time_fallback=True))
        assert after[0].record.text == "We went hiking in the hills."
        assert after[0].score > before[0].score
