"""LoCoMo and LongMemEval loaders, on small files the tests write themselves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engram.bench import locomo, longmemeval
from engram.bench.locomo import load_locomo, normalise_dia_id, parse_locomo_date
from engram.bench.longmemeval import (
    load_longmemeval,
    make_synthetic_longmemeval,
    parse_longmemeval_date,
    session_of,
)
from engram.errors import DataError


def locomo_sample(sample_id: str = "conv-1") -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bo",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a cat called Miso."},
                {
                    "speaker": "Bo",
                    "dia_id": "D1:2",
                    "text": "Look at my garden!",
                    "img_url": ["http://example.invalid/x.jpg"],
                    "blip_caption": "a photo of tomatoes on a vine",
                },
            ],
            "session_2_date_time": "10:04 am on 19 June, 2023",
            "session_2": [
                {"speaker": "Bo", "dia_id": "D2:1", "text": "My tomatoes are ripe now."},
                {"speaker": "Ann", "dia_id": "D2:2", "text": "Miso loves the sun."},
            ],
            "session_3_date_time": "9:00 am on 1 July, 2023",  # a date without a session
        },
        "qa": [
            {"question": "What is Ann's cat called?", "answer": "Miso",
             "evidence": ["D1:1"], "category": 4},
            {"question": "When were the tomatoes ripe?", "answer": 2023,
             "evidence": ["D2:1; D1:2"], "category": 2},
            {"question": "Which pets?", "answer": "a cat",
             "evidence": ["D:2:2", "D", "D7:7", "D1:1", "D1:1"], "category": 1},
            {"question": "What is Bo's dog called?", "adversarial_answer": "Rex",
             "evidence": ["D1:1"], "category": 5},
            {"question": "Unknown?", "answer": "x", "evidence": ["D9:1"], "category": 3},
        ],
        "observation": {"ignored": True},
        "session_summary": {"ignored": True},
        "event_summary": {"ignored": True},
    }  # fmt: skip


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_locomo_dates_and_ids() -> None:
    assert parse_locomo_date("1:56 pm on 8 May, 2023") == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert parse_locomo_date("12:09 am on 13 September, 2023").hour == 0
    with pytest.raises(DataError):
        parse_locomo_date("yesterday")
    assert normalise_dia_id("D8:6; D9:17") == ["D8:6", "D9:17"]
    assert normalise_dia_id("D:11:26") == ["D11:26"]
    assert normalise_dia_id("D") == []


def test_locomo_conversation(tmp_path: Path) -> None:
    data = load_locomo(write(tmp_path / "l.json", [locomo_sample()]))
    (sample,) = data.samples
    conv = sample.conversation
    assert (conv.sample_id, conv.speaker_a, conv.speaker_b) == ("conv-1", "Ann", "Bo")
    assert [s.session_id for s in conv.sessions] == ["session_1", "session_2"]
    assert conv.sessions[1].date == datetime(2023, 6, 19, 10, 4, tzinfo=UTC)
    image = conv.sessions[0].turns[1]
    assert image.text == "Look at my garden! [shares an image: a photo of tomatoes on a vine]"


def test_locomo_qa_and_evidence_repairs(tmp_path: Path) -> None:
    data = load_locomo(write(tmp_path / "l.json", [locomo_sample()]))
    qa = data.samples[0].qa
    assert qa[0].evidence == ("D1:1",) and qa[0].scorable
    assert qa[1].answer == "2023"
    assert qa[1].evidence == ("D2:1", "D1:2")
    assert qa[2].evidence == ("D2:2", "D1:1")
    assert (qa[3].answer, qa[3].category, qa[3].scorable) == ("Rex", 5, False)
    assert qa[4].evidence == () and not qa[4].scorable
    reasons = sorted((d.question_index, d.raw, d.reason) for d in data.dropped)
    assert reasons == [(2, "D", "malformed"), (2, "D7:7", "unknown-id"), (4, "D9:1", "unknown-id")]
    stats = data.stats()
    assert stats["scorable"] == 3
    assert stats["adversarial"] == 1
    assert stats["no_valid_evidence"] == 1
    assert stats["evidence_rewritten"] == 2
    assert stats["evidence_dropped"] == {"malformed": 1, "unknown-id": 2}


def test_locomo_work_units(tmp_path: Path) -> None:
    data = load_locomo(write(tmp_path / "l.json", [locomo_sample("a"), locomo_sample("b")]))
    units = locomo.to_work_units(data.samples)
    assert len(units) == 2
    assert [q.id for q in units[1].questions] == ["b#0", "b#1", "b#2"]
    turns = units[0].sessions[0].turns
    assert [(t.id, t.role, t.name) for t in turns] == [
        ("D1:1", "user", "Ann"),
        ("D1:2", "assistant", "Bo"),
    ]
    assert units[0].questions[0].group == "4"


@pytest.mark.parametrize("content", ["{", '{"not": "a list"}', '[{"sample_id": "x"}]'])
def test_locomo_malformed_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError):
        load_locomo(path)


def test_locomo_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_locomo(tmp_path / "nope.json")


def lme_item(question_id: str = "q1") -> dict[str, Any]:
    return {
        "question_id": question_id,
        "question_type": "single-session-user",
        "question": "What is my cat called?",
        "answer": "Miso",
        "question_date": "2023/05/30 (Tue) 23:40",
        "haystack_session_ids": ["s_a", "answer_1", "s_a"],
        "haystack_dates": ["2023/05/01 (Mon) 10:00", "2023/05/02 (Tue) 11:30",
                           "2023/05/03 (Wed) 09:00"],
        "haystack_sessions": [
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            [{"role": "user", "content": "My cat is Miso.", "has_answer": True},
             {"role": "assistant", "content": "Cute!", "has_answer": False}],
            [{"role": "user", "content": "Duplicate session id"}],
        ],
        "answer_session_ids": ["answer_1", "answer_gone"],
    }  # fmt: skip


def test_longmemeval_dates() -> None:
    got = parse_longmemeval_date("2023/05/30 (Tue) 23:40")
    assert got == datetime(2023, 5, 30, 23, 40, tzinfo=UTC)
    with pytest.raises(DataError):
        parse_longmemeval_date("May 30")


def test_longmemeval_item(tmp_path: Path) -> None:
    data = load_longmemeval(write(tmp_path / "lme.json", [lme_item(), lme_item("q2_abs")]))
    item, abstention = data.items
    assert not item.is_abstention and abstention.is_abstention
    assert [s.session_id for s in item.sessions] == ["s_a", "answer_1"]
    assert item.answer_session_ids == ("answer_1",)
    assert item.evidence_turn_ids == ("answer_1:1",)
    assert session_of("answer_1:1") == "answer_1"
    assert item.sessions[0].turns[0].has_answer is False
    assert item.question_date.tzinfo is UTC
    assert data.issues == {"answer_session_not_in_haystack": 2, "duplicate_session_dropped": 2}
    units = longmemeval.to_work_units(data.items)
    assert len(units) == 1  # abstention questions are not run
    (question,) = units[0].questions
    assert question.session_evidence == ("answer_1",)
    assert [t.id for t in units[0].sessions[1].turns] == ["answer_1:1", "answer_1:2"]


def test_longmemeval_missing_file_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data"):
        load_longmemeval(tmp_path / "longmemeval_s_cleaned.json")


def test_longmemeval_malformed_item(tmp_path: Path) -> None:
    item = lme_item()
    item["haystack_dates"] = item["haystack_dates"][:1]
    with pytest.raises(DataError, match="q1"):
        load_longmemeval(write(tmp_path / "lme.json", [item]))


def test_synthetic_file_is_in_the_official_format(tmp_path: Path) -> None:
    path = make_synthetic_longmemeval(tmp_path / "syn.json", n_questions=14, seed=3)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert len(raw) == 14
    keys = {
        "question_id",
        "question_type",
        "question",
        "answer",
        "question_date",
        "haystack_session_ids",
        "haystack_dates",
        "haystack_sessions",
        "answer_session_ids",
    }
    assert all(set(item) == keys for item in raw)  # fmt: skip
    data = load_longmemeval(path)
    assert data.issues == {}
    assert sum(i.is_abstention for i in data.items) == 2
    assert len({i.question_type for i in data.items}) == 6
    for item in data.items:
        assert item.evidence_turn_ids
        assert {session_of(t) for t in item.evidence_turn_ids} == set(item.answer_session_ids)
        assert all(s.date < item.question_date for s in item.sessions)
    again = make_synthetic_longmemeval(tmp_path / "again.json", n_questions=14, seed=3)
    assert again.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
