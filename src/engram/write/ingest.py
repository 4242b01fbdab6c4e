"""Building the records for new messages: verbatim turns plus round keys (a user turn and the
assistant turn that answers it), window keys (a few consecutive turns) and sentence keys (the
sentences of a longer turn). Pure functions: no I/O, deterministic ids."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from engram.embed.base import Vectors, normalise_rows
from engram.types import MemoryRecord, RecordKind
from engram.write.messages import Message

__all__ = [
    "DEFAULT_SESSION",
    "SENTENCES",
    "SentencePolicy",
    "build_rounds",
    "build_sentences",
    "build_turns",
    "build_windows",
    "record_id",
    "rekey",
    "span_vectors",
    "speakers_in_text",
    "split_sentences",
    "turn_key",
    "turn_keys",
]

DEFAULT_SESSION = "default"
MIN_SENTENCE_WORDS = 3  # shorter pieces ("Wow!", "Thanks, Mel!") say nothing on their own
MAX_SENTENCE_KEYS = 16  # per turn; a longer text is cut into at most this many runs of sentences

# A sentence ends at . ! or ? (and any closing quotes or brackets) followed by space and a capital
# or an opening quote, or at a line break. The end mark is captured so that it stays with its
# sentence. A break right after a common abbreviation ("Dr. Smith") is not a break.
_SENTENCE_BREAK = re.compile(r"""([.!?]["')\]]*)\s+(?=["'(\[]?[A-Z])|\s*\n\s*""")
_ABBREVIATIONS = frozenset(
    ["mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "mt."]
)


def record_id(user_id: str, session_id: str, kind: RecordKind, key: str) -> str:
    """A deterministic id, so that adding the same message twice stores it once."""
    # Unambiguous: user_id and session_id are Scope-checked ids, which cannot contain a control
    # character (\x1f included), and the kind is an enum value; so the first three separators
    # end the first three fields and the key (which may hold \x1f) is the rest. Do not change
    # this derivation: stored ids must stay the same, or re-imports would store duplicates.
    raw = "\x1f".join((user_id, session_id, kind.value, key)).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()[:32]


def turn_key(message: Message, occurrence: int) -> str:
    """The caller's id, else a hash of role, content, timestamp and how many identical messages
    came before it in the same call."""
    if message.id is not None:
        return "id:" + message.id
    stamp = message.timestamp.isoformat() if message.timestamp else ""
    raw = "\x1f".join((message.role, message.content, stamp, str(occurrence)))
    return "h:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def turn_keys(messages: Sequence[Message]) -> list[str]:
    seen: dict[tuple[str, str, datetime | None], int] = {}
    keys = []
    for m in messages:
        sig = (m.role, m.content, m.timestamp)
        seen[sig] = seen.get(sig, -1) + 1
        keys.append(turn_key(m, seen[sig]))
    return keys


# "Caroline: I went to a support group": a speaker's name (one to three capitalised words) and a
# colon at the start of a message, as chat transcripts write it.
_SPEAKER_PREFIX = re.compile(r"([A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,2}):[ \t]+(?=\S)")
# Labels that open a message the same way but name no one.
_NOT_SPEAKERS = frozenset(
    ["note", "notes", "update", "edit", "re", "fw", "fwd", "warning", "error", "question",
     "answer", "summary", "tldr", "ps", "tip", "reminder", "todo", "example", "important", "step",
     "subject", "date", "time", "source", "info", "hint", "caution"]
)  # fmt: skip


def _prefix(content: str) -> re.Match[str] | None:
    match = _SPEAKER_PREFIX.match(content)
    if match is None or len(match.group(1)) < 2:
        return None
    return None if match.group(1).lower().rstrip(".") in _NOT_SPEAKERS else match


def speakers_in_text(messages: Sequence[Message]) -> list[re.Match[str] | None]:
    """For each message, the ``"Name: "`` prefix that names its speaker, or None. A prefix
    counts only as the convention of a whole transcript: when the messages without a ``name``
    are at least two and every one of them starts with a name and a colon (not a label such as
    "Note:" or "Update:"). A lone message that merely opens with a colon ("Reminder: ...",
    "Paris: what to see") is left alone, and so is every message of a call where one does not."""
    nameless = [m for m in messages if m.name is None]
    matches = [_prefix(m.content) for m in nameless]
    if len(nameless) < 2 or any(match is None for match in matches):
        return [None] * len(messages)
    found = iter(matches)
    return [None if m.name is not None else next(found) for m in messages]


def build_turns(
    messages: Sequence[tuple[Message, str]],
    *,
    user_id: str,
    session_id: str,
    agent_id: str | None,
    first_seq: int,
    default_time: datetime,
    now: datetime,
) -> list[MemoryRecord]:
    """Turn records for (message, key) pairs, numbered from ``first_seq``. In a transcript whose
    messages name their speaker in the text (:func:`speakers_in_text`), the name becomes the
    turn's ``name`` and the text is what follows it, so the key text is the message as sent."""
    prefixes = speakers_in_text([m for m, _ in messages])
    return [
        MemoryRecord(
            id=record_id(user_id, session_id, RecordKind.TURN, key),
            kind=RecordKind.TURN,
            text=m.content if p is None else m.content[p.end() :],
            user_id=user_id,
            session_id=session_id,
            agent_id=agent_id,
            role=m.role,
            name=m.name if p is None else p.group(1),
            seq=first_seq + i,
            timestamp=m.timestamp or default_time,
            created_at=now,
            message_ids=(m.id,) if m.id is not None else (),
            metadata=m.metadata,
        )
        for i, ((m, key), p) in enumerate(zip(messages, prefixes, strict=True))
    ]


def _span_key(kind: RecordKind, span: Sequence[MemoryRecord], now: datetime) -> MemoryRecord:
    """An index key over consecutive turns of one session: the turns' key texts, one a line."""
    first = span[0]
    return MemoryRecord(
        id=record_id(first.user_id, first.session_id or "", kind, "".join(t.id for t in span)),
        kind=kind,
        text="\n".join(t.key_text for t in span),
        user_id=first.user_id,
        session_id=first.session_id,
        agent_id=first.agent_id,
        role=None,
        name=None,
        seq=first.seq,
        timestamp=first.timestamp,
        created_at=now,
        provenance=tuple(t.id for t in span),
        message_ids=tuple(m for t in span for m in t.message_ids),
    )


def build_rounds(
    turns: Sequence[MemoryRecord], previous: MemoryRecord | None, now: datetime
) -> list[MemoryRecord]:
    """A round record for every user turn directly followed by an assistant turn. ``previous``
    is the session's last stored turn, so a round can span two ``add`` calls."""
    sequence = ([previous] if previous is not None else []) + list(turns)
    return [
        _span_key(RecordKind.ROUND, pair, now)
        for pair in itertools.pairwise(sequence)
        if pair[0].role == "user" and pair[1].role == "assistant"
    ]


def build_windows(
    turns: Sequence[MemoryRecord], previous: Sequence[MemoryRecord], size: int, now: datetime
) -> list[MemoryRecord]:
    """A window key for every run of up to ``size`` consecutive turns (at least two) that ends at
    a new turn, whatever the roles. ``previous`` holds the session's last stored turns, so windows
    span ``add`` calls. A hit on a window counts for every turn in it: a turn is often only
    understandable with its neighbours ("Yes, last Tuesday!")."""
    if size < 2:
        return []
    sequence = [*previous, *turns]
    return [
        _span_key(RecordKind.WINDOW, sequence[max(0, end - size + 1) : end + 1], now)
        for end in range(max(len(previous), 1), len(sequence))
    ]


def _pieces(text: str) -> list[str]:
    parts = _SENTENCE_BREAK.split(text)  # [piece, end mark or None, piece, end mark, ...]
    pieces: list[str] = []
    for i in range(0, len(parts), 2):
        end = parts[i + 1] if i + 1 < len(parts) else None
        piece = (parts[i] + (end or "")).strip()
        if pieces and pieces[-1].split()[-1].lower() in _ABBREVIATIONS:
            pieces[-1] = f"{pieces[-1]} {piece}"
        elif piece:
            pieces.append(piece)
    return pieces


def split_sentences(text: str, *, most: int = MAX_SENTENCE_KEYS) -> list[str]:
    """The sentences of ``text`` that have at least :data:`MIN_SENTENCE_WORDS` words. Past
    ``most`` sentences, consecutive sentences are joined into at most ``most`` runs."""
    parts = [p for p in _pieces(text) if len(p.split()) >= MIN_SENTENCE_WORDS]
    if len(parts) <= most:
        return parts
    size = math.ceil(len(parts) / most)
    return [" ".join(parts[i : i + size]) for i in range(0, len(parts), size)]


def _sentences_of(turn: MemoryRecord, policy: SentencePolicy) -> list[str]:
    long = turn.role == "assistant" and len(turn.text.split()) > policy.long_words
    return split_sentences(turn.text)[: policy.long_keys] if long else split_sentences(turn.text)


@dataclass(frozen=True)
class SentencePolicy:
    """Which sentences of a turn become keys: an assistant turn of more than ``long_words``
    words keeps only its first ``long_keys`` sentence keys (0: none). Long assistant answers
    (LongMemEval's average ~340 words) are most of the text a memory embeds, and the questions
    about them are served by the turn's own key and BM25 over its full text."""

    long_words: int = 10**9
    long_keys: int = MAX_SENTENCE_KEYS


# The policy Memory.add uses: an assistant turn of more than 150 words keeps its first 4 sentence
# keys. On LongMemEval-shaped sessions that embeds ~45% fewer words at the same recall
# (docs/benchmarks.md); LoCoMo's turns are shorter and keep every sentence.
SENTENCES = SentencePolicy(long_words=150, long_keys=4)


def build_sentences(
    turns: Sequence[MemoryRecord], now: datetime, policy: SentencePolicy | None = None
) -> list[MemoryRecord]:
    """A sentence key for every sentence of a turn that has at least two: a long turn's
    embedding blurs what each of its sentences says ("I had a quiet weekend after we went
    camping. The kids loved the lake."). A turn of one sentence is its own key already."""
    keys: list[MemoryRecord] = []
    rule = policy or SENTENCES
    for turn in turns:
        sentences = _sentences_of(turn, rule)
        if len(sentences) < 2:
            continue
        session = turn.session_id or ""
        keys.extend(
            replace(
                turn,
                id=record_id(turn.user_id, session, RecordKind.SENTENCE, f"{turn.id}#{i}"),
                kind=RecordKind.SENTENCE,
                text=sentence,
                created_at=now,
                provenance=(turn.id,),
                metadata={},
            )
            for i, sentence in enumerate(sentences)
        )
    return keys


def span_vectors(spans: Sequence[MemoryRecord], turns: Mapping[str, Vectors], dim: int) -> Vectors:
    """The vector of each round or window key: the normalised mean of its turns' vectors
    (``turns`` maps a turn id to its unit vector). Measured on LoCoMo it retrieves as well as
    embedding the key's joined text, at no model cost (docs/benchmarks.md)."""
    if not spans:
        return np.zeros((0, dim), dtype=np.float32)
    return normalise_rows(
        np.vstack([np.mean([turns[i] for i in key.provenance], axis=0) for key in spans])
    )


def rekey(key: MemoryRecord, turns: Sequence[MemoryRecord]) -> str:
    """The text of a round or window key rebuilt from its (possibly updated) source turns."""
    by_id = {t.id: t for t in turns}
    return "\n".join(by_id[i].key_text for i in key.provenance if i in by_id)
