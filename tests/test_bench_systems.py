"""The systems a benchmark run compares: Engram through its public API and the two baselines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from engram import HashEmbedder, Memory
from engram.bench.corpus import CorpusSession, CorpusTurn, Question, clean_sessions
from engram.bench.systems import MemoEmbedder, make_system, system_names
from engram.embed import Vectors

SESSIONS = (
    CorpusSession(
        "s1",
        datetime(2023, 5, 1, tzinfo=UTC),
        (
            CorpusTurn("s1:1", "user", "I adopted a cat called Miso."),
            CorpusTurn("s1:2", "assistant", "What a lovely name for a cat!"),
        ),
    ),
    CorpusSession(
        "s2",
        datetime(2023, 5, 9, tzinfo=UTC),
        (
            CorpusTurn("s2:1", "user", "My sister moved to Lisbon."),
            CorpusTurn("s2:2", "assistant", "Lisbon is beautiful in spring."),
            CorpusTurn("s2:3", "user", "She works at a bakery there."),
        ),
    ),
)


def ask(text: str) -> Question:
    return Question("q", text, datetime(2023, 6, 1, tzinfo=UTC), "g", ())


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.seen.extend(texts)
        return super().embed_batch(texts)


def test_memo_embedder_embeds_each_text_once() -> None:
    inner = CountingEmbedder()
    memo = MemoEmbedder(inner)
    first = memo.embed_batch(["a b", "c d", "a b"])
    second = memo.embed_batch(["c d"])
    assert inner.seen == ["a b", "c d"]
    assert np.array_equal(first[2], first[0])
    assert np.array_equal(second[0], HashEmbedder().embed_batch(["c d"])[0])
    assert memo.embed_batch([]).shape == (0, inner.dim)
    assert (memo.name, memo.dim) == (inner.name, inner.dim)
    memo.trim()  # keep=0: forget everything
    memo.embed_batch(["a b"])
    assert inner.seen == ["a b", "c d", "a b"]
    memo.recording = False  # asking: served from the memo, new texts not remembered
    memo.embed_batch(["a b", "query"])
    memo.embed_batch(["query"])
    assert inner.seen == ["a b", "c d", "a b", "query", "query"]


def test_memo_embedder_keeps_the_most_recently_used_between_corpora() -> None:
    inner = CountingEmbedder()
    memo = MemoEmbedder(inner, keep=2)
    memo.embed_batch(["a", "b", "c"])
    memo.embed_batch(["a"])  # "a" is now the most recent; "b" the least
    memo.trim()
    memo.embed_batch(["a", "c", "b"])
    assert inner.seen == ["a", "b", "c", "b"]


def test_bm25_ranks_matching_turns_only() -> None:
    index = make_system("bm25", HashEmbedder()).build(SESSIONS)
    ranking = index.rank(ask("Where did my sister move, Lisbon?"), 10)
    assert ranking.turns[0] == "s2:1"
    assert set(ranking.turns) <= {"s2:1", "s2:2"}  # turns without a query word are left out
    assert ranking.sessions == ("s2",)
    assert index.rank(ask("the and of"), 10).turns == ()  # nothing but stop words
    index.close()


def test_dense_ranks_every_turn() -> None:
    index = make_system("dense", HashEmbedder()).build(SESSIONS)
    ranking = index.rank(ask("cat called Miso"), 3)
    assert ranking.turns[0] == "s1:1"
    assert len(ranking.turns) == 3
    assert ranking.sessions == ("s1", "s2")


@pytest.mark.parametrize("preset", ["lexical", "semantic", "hybrid"])
def test_engram_returns_the_callers_ids(preset: str) -> None:
    system = make_system(f"engram:{preset}", HashEmbedder(), sessions=True)
    assert system.name == f"engram:{preset}"
    index = system.build(SESSIONS)
    try:
        ranking = index.rank(ask("Where did my sister move to, Lisbon?"), 5)
    finally:
        index.close()
    assert ranking.turns[0] in {"s2:1", "s2:2"}
    assert set(ranking.turns) <= {"s1:1", "s1:2", "s2:1", "s2:2", "s2:3"}
    assert ranking.sessions[0] == "s2"


def test_plain_mode_sends_the_role_only_and_no_question_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = (
        CorpusSession("s1", datetime(2023, 5, 1, tzinfo=UTC), (
            CorpusTurn("a", "user", "I adopted a cat called Miso.", name="Ann"),
            CorpusTurn("b", "assistant", "Lovely!", name="Bo"),
        )),
    )  # fmt: skip
    sent: list[Any] = []
    asked: list[Any] = []
    real_add, real_search = Memory.add, Memory.search

    def add(self: Memory, messages: Any, **kw: Any) -> Any:
        sent.extend(messages)
        return real_add(self, messages, **kw)

    def search(self: Memory, query: str, **kw: Any) -> Any:
        asked.append(kw.get("question_date"))
        return real_search(self, query, **kw)

    monkeypatch.setattr(Memory, "add", add)
    monkeypatch.setattr(Memory, "search", search)
    system = make_system("engram:lexical/plain", HashEmbedder())
    assert system.name == "engram:lexical/plain"
    index = system.build(sessions)
    try:
        question = Question("q", "Miso?", datetime(2023, 6, 1, tzinfo=UTC), "1", ("a",))
        assert index.rank(question, 5).turns[0] == "a"
    finally:
        index.close()
    assert sent == [
        {"role": "user", "content": "Ann: I adopted a cat called Miso.", "id": "a"},
        {"role": "assistant", "content": "Bo: Lovely!", "id": "b"},
    ]
    assert asked == [None]
    assert system_names(["lexical", "engram:hybrid"], ["named", "plain"]) == [
        "engram:lexical", "engram:lexical/plain", "engram:hybrid", "engram:hybrid/plain",
    ]  # fmt: skip


def test_clean_sessions_leaves_out_empty_turns() -> None:
    raw = (
        CorpusSession(
            "s", None, (CorpusTurn("a", "user", " \x00 "), CorpusTurn("b", "user", "x\x00y"))
        ),
    )
    (session,) = clean_sessions(raw)
    assert [(t.id, t.text) for t in session.turns] == [("b", "xy")]
