"""The benchmark-neutral shapes the runner works with: a corpus of dated sessions of turns, and
the questions asked of it. Each loader converts its own format into these."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CorpusSession", "CorpusTurn", "Question", "WorkUnit", "clean_sessions", "dedupe"]


@dataclass(frozen=True)
class CorpusTurn:
    """One message: ``id`` is the caller's id that evidence refers to."""

    id: str
    role: str  # "user" | "assistant"
    text: str
    name: str | None = None

    @property
    def key_text(self) -> str:
        """The text the baselines index: the speaker's name, when known, then what was said."""
        return f"{self.name}: {self.text}" if self.name else self.text


@dataclass(frozen=True)
class CorpusSession:
    id: str
    date: datetime | None
    turns: tuple[CorpusTurn, ...]


@dataclass(frozen=True)
class Question:
    """A question with its evidence: turn ids and (where the benchmark labels them) session ids.
    ``meta`` is copied into the question's output row (category, answer, ...)."""

    id: str
    text: str
    date: datetime | None
    group: str  # the category / question type the question is reported under
    turn_evidence: tuple[str, ...]
    session_evidence: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkUnit:
    """One corpus and the questions asked of it: one store is built per unit."""

    sessions: tuple[CorpusSession, ...]
    questions: tuple[Question, ...]


def dedupe(ids: Iterable[str]) -> list[str]:
    """The ids in first-seen order, without repeats."""
    seen: set[str] = set()
    out: list[str] = []
    for item in ids:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def clean_sessions(sessions: Iterable[CorpusSession]) -> tuple[CorpusSession, ...]:
    """What every system indexes: NUL characters removed, turns without text left out (a
    memory store rejects empty messages; the baselines must see the same corpus)."""
    out: list[CorpusSession] = []
    for session in sessions:
        turns = tuple(
            CorpusTurn(t.id, t.role, t.text.replace("\x00", ""), t.name)
            for t in session.turns
            if t.text.replace("\x00", "").strip()
        )
        out.append(CorpusSession(session.id, session.date, turns))
    return tuple(out)
