"""Loader for the LoCoMo file format (snap-research/LoCoMo ``data/locomo10.json``).

Only the conversation and the QA items are read. The generated ``observation``,
``session_summary`` and ``event_summary`` annotations are ignored on purpose: they restate the
answers and would leak them into a retrieval measurement.

Evidence ids in the public file are not all well formed (``"D8:6; D9:17"`` in one string,
``"D:11:26"``, a bare ``"D"``, ids of turns that do not exist). Each entry is split into the
``D<session>:<turn>`` ids it contains, matched against the conversation's turns, and whatever
cannot be matched is dropped and listed in :attr:`LocomoDataset.dropped`.
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

from engram.bench.corpus import CorpusSession, CorpusTurn, Question, WorkUnit, dedupe
from engram.errors import DataError

__all__ = [
    "CATEGORY_NAMES",
    "DroppedEvidence",
    "LocomoConversation",
    "LocomoDataset",
    "LocomoQA",
    "LocomoSample",
    "LocomoSession",
    "LocomoTurn",
    "load_locomo",
    "normalise_dia_id",
    "parse_locomo_date",
    "to_work_units",
]

ADVERSARIAL = 5
# Report per number; these names match the full file's per-category counts (see the data README).
CATEGORY_NAMES: Mapping[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}

_SESSION_KEY = re.compile(r"session_(\d+)")
_DIA_ID = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)", re.IGNORECASE)
_DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%I:%M %p on %d %B %Y")


@dataclass(frozen=True)
class LocomoTurn:
    speaker: str
    dia_id: str
    text: str  # an image's caption is appended: "... [shares an image: <caption>]"


@dataclass(frozen=True)
class LocomoSession:
    session_id: str  # "session_1"
    date: datetime | None
    turns: tuple[LocomoTurn, ...]


@dataclass(frozen=True)
class LocomoConversation:
    sample_id: str
    speaker_a: str
    speaker_b: str
    sessions: tuple[LocomoSession, ...]

    def dia_ids(self) -> set[str]:
        return {turn.dia_id for session in self.sessions for turn in session.turns}


@dataclass(frozen=True)
class LocomoQA:
    question: str
    answer: str  # for category 5 (adversarial): the adversarial answer
    evidence: tuple[str, ...]  # valid dia ids only
    category: int

    @property
    def scorable(self) -> bool:
        """Counted in evidence recall: not adversarial, and with at least one valid evidence id."""
        return self.category != ADVERSARIAL and bool(self.evidence)


@dataclass(frozen=True)
class LocomoSample:
    conversation: LocomoConversation
    qa: tuple[LocomoQA, ...]

    @property
    def sample_id(self) -> str:
        return self.conversation.sample_id


@dataclass(frozen=True)
class DroppedEvidence:
    sample_id: str
    question_index: int
    raw: str
    reason: str  # "malformed" | "unknown-id"


@dataclass(frozen=True)
class LocomoDataset:
    samples: tuple[LocomoSample, ...]
    dropped: tuple[DroppedEvidence, ...]
    rewritten: int  # evidence entries kept, but split or rewritten to a canonical id

    def stats(self) -> dict[str, Any]:
        questions = [qa for sample in self.samples for qa in sample.qa]
        reasons = Counter(item.reason for item in self.dropped)
        return {
            "conversations": len(self.samples),
            "questions": len(questions),
            "scorable": sum(qa.scorable for qa in questions),
            "adversarial": sum(qa.category == ADVERSARIAL for qa in questions),
            "no_valid_evidence": sum(
                qa.category != ADVERSARIAL and not qa.evidence for qa in questions
            ),
            "evidence_rewritten": self.rewritten,
            "evidence_dropped": dict(sorted(reasons.items())),
        }


def parse_locomo_date(text: str) -> datetime:
    """``"1:56 pm on 8 May, 2023"`` -> an aware datetime in UTC (the file gives no zone)."""
    cleaned = " ".join(text.split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise DataError(f"unrecognised LoCoMo session date {text!r}")


def normalise_dia_id(text: str) -> list[str]:
    """Every ``D<session>:<turn>`` id in ``text``, canonical (``"D:11:26"`` -> ``["D11:26"]``)."""
    return [f"D{int(s)}:{int(t)}" for s, t in _DIA_ID.findall(text)]


def load_locomo(path: str | Path) -> LocomoDataset:
    """Read a LoCoMo JSON file (the full ``locomo10.json`` or a subset of its samples)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(
            f"LoCoMo file not found: {file}; download data/locomo10.json from the LoCoMo "
            "repository (github.com/snap-research/LoCoMo) and pass its path with --data"
        )
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read LoCoMo file {file}: {exc}") from exc
    if not isinstance(raw, list):
        raise DataError(f"{file}: expected a JSON list of samples")
    samples: list[LocomoSample] = []
    dropped: list[DroppedEvidence] = []
    rewritten = 0
    for position, item in enumerate(raw):
        try:
            sample, lost, fixed = _parse_sample(item)
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{file}: malformed sample #{position}: {exc!r}") from exc
        samples.append(sample)
        dropped.extend(lost)
        rewritten += fixed
    return LocomoDataset(tuple(samples), tuple(dropped), rewritten)


def _parse_sample(item: Mapping[str, Any]) -> tuple[LocomoSample, list[DroppedEvidence], int]:
    conversation = _parse_conversation(str(item["sample_id"]), item["conversation"])
    lookup = {_canonical(d): d for d in conversation.dia_ids()}
    qa: list[LocomoQA] = []
    dropped: list[DroppedEvidence] = []
    rewritten = 0
    for index, entry in enumerate(item.get("qa", [])):
        category = int(entry["category"])
        evidence: list[str] = []
        for raw in entry.get("evidence", []):
            ids = normalise_dia_id(str(raw))
            if not ids:
                dropped.append(
                    DroppedEvidence(conversation.sample_id, index, str(raw), "malformed")
                )
                continue
            found = [lookup[c] for c in ids if c in lookup]
            dropped.extend(
                DroppedEvidence(conversation.sample_id, index, str(raw), "unknown-id")
                for c in ids
                if c not in lookup
            )
            if found and found != [str(raw)]:
                rewritten += 1
            evidence.extend(found)
        answer = entry.get("adversarial_answer") if category == ADVERSARIAL else None
        if answer is None:
            answer = entry.get("answer", "")
        qa.append(
            LocomoQA(
                question=str(entry["question"]),
                answer="" if answer is None else str(answer),
                evidence=tuple(dedupe(evidence)),
                category=category,
            )
        )
    return LocomoSample(conversation, tuple(qa)), dropped, rewritten


def _canonical(dia_id: str) -> str:
    ids = normalise_dia_id(dia_id)
    return ids[0] if len(ids) == 1 else dia_id


def _parse_conversation(sample_id: str, conv: Mapping[str, Any]) -> LocomoConversation:
    numbered: list[tuple[int, str]] = []
    for key, value in conv.items():
        match = _SESSION_KEY.fullmatch(key)
        if match and isinstance(value, list):  # some files carry dates of sessions not included
            numbered.append((int(match.group(1)), key))
    sessions: list[LocomoSession] = []
    for _, key in sorted(numbered):
        date_text = conv.get(f"{key}_date_time")
        date = parse_locomo_date(str(date_text)) if date_text else None
        turns = tuple(_parse_turn(turn) for turn in conv[key])
        sessions.append(LocomoSession(key, date, turns))
    return LocomoConversation(
        sample_id=sample_id,
        speaker_a=str(conv["speaker_a"]),
        speaker_b=str(conv["speaker_b"]),
        sessions=tuple(sessions),
    )


def _parse_turn(turn: Mapping[str, Any]) -> LocomoTurn:
    text = str(turn.get("text", ""))
    caption = turn.get("blip_caption")
    if caption:
        text = f"{text} [shares an image: {caption}]"
    return LocomoTurn(speaker=str(turn["speaker"]), dia_id=str(turn["dia_id"]), text=text)


def to_work_units(samples: Sequence[LocomoSample]) -> list[WorkUnit]:
    """One unit per conversation, with its scorable questions (ids ``"<sample_id>#<index>"``).

    ``speaker_a`` speaks as role "user", ``speaker_b`` as "assistant"; names are kept.
    """
    units: list[WorkUnit] = []
    for sample in samples:
        conv = sample.conversation
        sessions = tuple(
            CorpusSession(
                id=session.session_id,
                date=session.date,
                turns=tuple(
                    CorpusTurn(
                        id=turn.dia_id,
                        role="user" if turn.speaker == conv.speaker_a else "assistant",
                        text=turn.text,
                        name=turn.speaker,
                    )
                    for turn in session.turns
                ),
            )
            for session in conv.sessions
        )
        # The file gives no question dates: the questions are asked when the conversation ends,
        # so relative expressions ("last year") resolve against the last session's date.
        dates = [s.date for s in conv.sessions if s.date is not None]
        asked = max(dates) if dates else None
        questions = tuple(
            Question(
                id=f"{sample.sample_id}#{index}",
                text=qa.question,
                date=asked,
                group=str(qa.category),
                turn_evidence=qa.evidence,
                meta={
                    "conversation": sample.sample_id,
                    "category": qa.category,
                    "answer": qa.answer,
                },
            )
            for index, qa in enumerate(sample.qa)
            if qa.scorable
        )
        units.append(WorkUnit(sessions, questions))
    return units
