"""Loader for the official LongMemEval JSON files (``longmemeval_s.json``,
``longmemeval_s_cleaned.json``, ``longmemeval_m.json``, ``longmemeval_oracle.json``).

Each item is one question with its own haystack of dated sessions. A turn is evidence when it
carries ``has_answer: true``; a session is evidence when its id is in ``answer_session_ids``.
Question ids ending in ``_abs`` are abstention questions, excluded from retrieval metrics.

Turn ids are ``f"{session_id}:{n}"`` with ``n`` the 1-based position of the turn in its session
(the official code numbers turns the same way, joined with ``_``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engram.bench.corpus import CorpusSession, CorpusTurn, Question, WorkUnit
from engram.bench.synthetic import make_synthetic_longmemeval
from engram.errors import DataError

__all__ = [
    "LongMemEvalDataset",
    "LongMemEvalItem",
    "LongMemEvalSession",
    "LongMemEvalTurn",
    "format_longmemeval_date",
    "load_longmemeval",
    "make_synthetic_longmemeval",
    "parse_longmemeval_date",
    "session_of",
    "to_pooled_unit",
    "to_work_units",
    "turn_id",
]

_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})\s*(?:\([A-Za-z]+\))?\s*(\d{1,2}):(\d{2})")
_MISSING_HINT = (
    "download longmemeval_s_cleaned.json (or longmemeval_s.json / longmemeval_m.json / "
    "longmemeval_oracle.json) from the LongMemEval release (github.com/xiaowu0162/LongMemEval) "
    "and pass its path with --data"
)


@dataclass(frozen=True)
class LongMemEvalTurn:
    role: str
    content: str
    has_answer: bool = False


@dataclass(frozen=True)
class LongMemEvalSession:
    session_id: str
    date: datetime
    turns: tuple[LongMemEvalTurn, ...]


@dataclass(frozen=True)
class LongMemEvalItem:
    question_id: str
    question_type: str
    question: str
    answer: str
    question_date: datetime
    sessions: tuple[LongMemEvalSession, ...]
    answer_session_ids: tuple[str, ...]  # only those present in the haystack

    @property
    def is_abstention(self) -> bool:
        return self.question_id.endswith("_abs")

    @property
    def evidence_turn_ids(self) -> tuple[str, ...]:
        """Ids of the turns marked ``has_answer``, in haystack order."""
        return tuple(
            turn_id(session.session_id, n)
            for session in self.sessions
            for n, turn in enumerate(session.turns, start=1)
            if turn.has_answer
        )


@dataclass(frozen=True)
class LongMemEvalDataset:
    items: tuple[LongMemEvalItem, ...]
    issues: Mapping[str, int]  # what was repaired or dropped while loading, with counts

    def stats(self) -> dict[str, Any]:
        return {
            "questions": len(self.items),
            "abstention": sum(item.is_abstention for item in self.items),
            "scorable": sum(not item.is_abstention for item in self.items),
            "by_type": dict(sorted(Counter(i.question_type for i in self.items).items())),
            "issues": dict(self.issues),
        }


def turn_id(session_id: str, n: int) -> str:
    return f"{session_id}:{n}"


def session_of(turn: str) -> str:
    """The session id of a turn id made by :func:`turn_id`."""
    return turn.rsplit(":", 1)[0]


def parse_longmemeval_date(text: str) -> datetime:
    """``"2023/05/30 (Tue) 23:40"`` -> an aware datetime in UTC (the files give no zone)."""
    match = _DATE.search(text)
    if not match:
        raise DataError(f"unrecognised LongMemEval date {text!r}")
    year, month, day, hour, minute = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute, tzinfo=UTC)
    except ValueError as exc:
        raise DataError(f"invalid LongMemEval date {text!r}: {exc}") from exc


def format_longmemeval_date(value: datetime) -> str:
    """The official format, e.g. ``"2023/05/30 (Tue) 23:40"``."""
    return value.strftime("%Y/%m/%d (%a) %H:%M")


def load_longmemeval(path: str | Path) -> LongMemEvalDataset:
    """Read an official LongMemEval file; raise :class:`DataError` if missing or malformed."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"LongMemEval file not found: {file}; {_MISSING_HINT}")
    try:
        with file.open(encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read LongMemEval file {file}: {exc}") from exc
    if not isinstance(raw, list):
        raise DataError(f"{file}: expected a JSON list of questions")
    issues: Counter[str] = Counter()
    items: list[LongMemEvalItem] = []
    for position, entry in enumerate(raw):
        try:
            items.append(_parse_item(entry, issues))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            qid = entry.get("question_id") if isinstance(entry, dict) else None
            raise DataError(f"{file}: malformed item #{position} ({qid}): {exc!r}") from exc
    return LongMemEvalDataset(tuple(items), dict(sorted(issues.items())))


def _parse_item(entry: Mapping[str, Any], issues: Counter[str]) -> LongMemEvalItem:
    ids = [str(s) for s in entry["haystack_session_ids"]]
    dates = [str(d) for d in entry["haystack_dates"]]
    bodies = entry["haystack_sessions"]
    if not len(ids) == len(dates) == len(bodies):
        raise ValueError(
            f"haystack lengths differ: {len(ids)} ids, {len(dates)} dates, {len(bodies)} sessions"
        )
    sessions: list[LongMemEvalSession] = []
    seen: set[str] = set()
    for session_id, date, body in zip(ids, dates, bodies, strict=True):
        if session_id in seen:  # a repeated id would make turn ids ambiguous: keep the first
            issues["duplicate_session_dropped"] += 1
            continue
        seen.add(session_id)
        turns = tuple(
            LongMemEvalTurn(
                role=str(turn["role"]),
                content=str(turn["content"]),
                has_answer=bool(turn.get("has_answer", False)),
            )
            for turn in body
        )
        sessions.append(LongMemEvalSession(session_id, parse_longmemeval_date(date), turns))
    answer_sessions = [str(s) for s in entry.get("answer_session_ids", [])]
    present = tuple(s for s in answer_sessions if s in seen)
    if len(present) < len(answer_sessions):
        issues["answer_session_not_in_haystack"] += len(answer_sessions) - len(present)
    return LongMemEvalItem(
        question_id=str(entry["question_id"]),
        question_type=str(entry["question_type"]),
        question=str(entry["question"]),
        answer=str(entry["answer"]),
        question_date=parse_longmemeval_date(str(entry["question_date"])),
        sessions=tuple(sessions),
        answer_session_ids=present,
    )


def _corpus_session(session: LongMemEvalSession) -> CorpusSession:
    return CorpusSession(
        id=session.session_id,
        date=session.date,
        turns=tuple(
            CorpusTurn(id=turn_id(session.session_id, n), role=turn.role, text=turn.content)
            for n, turn in enumerate(session.turns, start=1)
        ),
    )


def _question(item: LongMemEvalItem) -> Question:
    return Question(
        id=item.question_id,
        text=item.question,
        date=item.question_date,
        group=item.question_type,
        turn_evidence=item.evidence_turn_ids,
        session_evidence=item.answer_session_ids,
        meta={"question_type": item.question_type, "answer": item.answer},
    )


def to_work_units(items: Sequence[LongMemEvalItem]) -> list[WorkUnit]:
    """One unit (one store) per non-abstention question: the official protocol, each question
    against its own haystack."""
    return [
        WorkUnit(tuple(_corpus_session(s) for s in item.sessions), (_question(item),))
        for item in items
        if not item.is_abstention
    ]


def to_pooled_unit(items: Sequence[LongMemEvalItem]) -> WorkUnit:
    """One unit for the whole file: every session of every question's haystack (each session id
    once, first occurrence kept, in file order) in one store, and every non-abstention question
    searched against all of them. With the oracle file this turns each question's other-question
    sessions into distractors written by the same kind of simulated user."""
    sessions: dict[str, CorpusSession] = {}
    for item in items:
        for session in item.sessions:
            sessions.setdefault(session.session_id, _corpus_session(session))
    questions = tuple(_question(item) for item in items if not item.is_abstention)
    return WorkUnit(tuple(sessions.values()), questions)
