"""The command line's input files: a list of messages for ``engram add`` and conversations for
``engram import``. A problem raises :class:`~engram.DataError` naming the file and the line (JSONL)
or the index (JSON) of what is wrong.

A conversation is one JSON object::

    {"user_id": "u1", "session_id": "s1", "session_date": "2024-03-02T10:00:00Z",
     "agent_id": "assistant", "messages": [{"role": "user", "content": "..."}]}

``session_date`` and ``agent_id`` are optional; ``user_id`` may come from ``--user`` instead.
A file holds one conversation per line (JSONL: ``.jsonl`` / ``.ndjson``), or is a JSON list of
conversations or a single conversation (``.json``). For other names and standard input (``-``)
a document that starts with ``[`` is JSON, anything else JSONL.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram import DataError
from engram.types import short_repr

__all__ = ["CONVERSATION_FIELDS", "Conversation", "ConversationFile", "read_messages"]

CONVERSATION_FIELDS = ("user_id", "session_id", "session_date", "agent_id", "messages")
STDIN = "-"


@dataclass(frozen=True)
class Conversation:
    """One conversation to add with one ``Memory.add`` call; ``where`` names its place."""

    where: str
    user_id: str
    session_id: str
    messages: object
    session_date: str | None = None
    agent_id: str | None = None


def _label(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def read_text(path: str) -> str:
    """The whole text of ``path`` (``-`` is standard input), as UTF-8."""
    try:
        return sys.stdin.read() if path == STDIN else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory") from None
    except UnicodeDecodeError as exc:
        where = _label(path)
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{_label(path)}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. a NUL byte in the name
        raise DataError(f"{_label(path)}: cannot read ({exc})") from None


def _load_json(text: str, where: str, *, one_line: bool = False) -> Any:
    """The JSON document ``text``; ``one_line``: a JSONL line (its position omits the line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if one_line else f"line {exc.lineno} column {exc.colno}"
        raise DataError(f"{where}: invalid JSON: {exc.msg} ({at})") from None
    except ValueError as exc:  # Python reads integers of at most 4,300 digits
        reason = "a number of more than 4,300 digits" if "digits" in str(exc) else str(exc)
        raise DataError(f"{where}: invalid JSON: {reason}") from None
    except RecursionError:
        raise DataError(f"{where}: invalid JSON: nested too deeply") from None


def read_messages(path: str) -> list[Any]:
    """A JSON list of message objects (``{"role", "content", ...}``) from a file or stdin."""
    label = _label(path)
    doc = _load_json(read_text(path), label)
    if not isinstance(doc, list):
        raise DataError(f"{label}: expected a JSON list of messages, got {type(doc).__name__}")
    return doc


def _id(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"{where}: {key!r} must be a string, got {short_repr(value)}")
    return str(value)


def to_conversation(raw: object, where: str, *, user_id: str | None = None) -> Conversation:
    """Check one conversation object's shape (its messages are checked by ``Memory.add``)."""
    if not isinstance(raw, Mapping):
        raise DataError(f"{where}: expected a conversation object, got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - set(CONVERSATION_FIELDS))
    if unknown:
        raise DataError(f"{where}: unknown fields {unknown}; known: {list(CONVERSATION_FIELDS)}")
    user = user_id or _id(raw, "user_id", where)
    if not user:
        raise DataError(f"{where}: missing 'user_id' (or pass --user)")
    session = _id(raw, "session_id", where)
    if not session:
        raise DataError(f"{where}: missing 'session_id'")
    if "messages" not in raw:
        raise DataError(f"{where}: missing 'messages'")
    date = raw.get("session_date")
    if date is not None and not isinstance(date, str):
        shown = short_repr(date)
        raise DataError(f"{where}: 'session_date' must be an ISO 8601 string, got {shown}")
    return Conversation(
        where=where, user_id=user, session_id=session, messages=raw["messages"],
        session_date=date, agent_id=_id(raw, "agent_id", where),
    )  # fmt: skip


@dataclass(frozen=True)
class ConversationFile:
    """A conversations file, read but not yet checked: its length is known before iterating,
    and each conversation is parsed (JSONL) and checked only when its turn comes."""

    label: str
    jsonl: bool
    items: tuple[tuple[str, Any], ...]  # (where, the line's text if jsonl else the object)
    user_id: str | None = None

    @classmethod
    def read(cls, path: str, *, user_id: str | None = None) -> ConversationFile:
        label = _label(path)
        text = read_text(path)
        suffix = "" if path == STDIN else Path(path).suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            jsonl = True
        elif suffix == ".json":
            jsonl = False
        else:
            jsonl = not text.lstrip().startswith("[")
        if jsonl:
            lines = text.split("\n")  # not splitlines(): JSON strings may hold U+2028, \x1e...
            items = tuple((f"{label} line {n}", ln) for n, ln in enumerate(lines, 1) if ln.strip())
            return cls(label, True, items, user_id)
        doc = _load_json(text, label)
        if isinstance(doc, list):
            return cls(
                label, False, tuple((f"{label}[{i}]", d) for i, d in enumerate(doc)), user_id
            )
        return cls(label, False, ((label, doc),), user_id)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Conversation]:
        for where, item in self.items:
            raw = _load_json(item, where, one_line=True) if self.jsonl else item
            yield to_conversation(raw, where, user_id=self.user_id)
