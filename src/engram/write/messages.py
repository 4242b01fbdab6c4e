"""Validation of incoming messages at the boundary: everything is checked before anything is
written, so a bad message rejects the whole ``add`` call."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engram.errors import InvalidInputError

__all__ = ["MAX_CONTENT_CHARS", "Message", "parse_datetime", "parse_messages"]

MAX_CONTENT_CHARS = 100_000
_KNOWN_FIELDS = {"role", "content", "id", "name", "timestamp", "metadata"}


@dataclass(frozen=True)
class Message:
    """A validated message."""

    role: str
    content: str
    id: str | None = None
    name: str | None = None
    timestamp: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def parse_datetime(value: object, what: str) -> datetime | None:
    """A timezone-aware datetime from a datetime or an ISO 8601 string; naive means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidInputError(f"{what}: not an ISO 8601 date/time: {value!r}") from exc
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{what}: expected a datetime or ISO string, got {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _text(value: object, what: str, *, limit: int) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{what}: bytes are not valid UTF-8 ({exc.reason})") from exc
    if not isinstance(value, str):
        raise InvalidInputError(f"{what}: expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what}: not valid Unicode text ({exc.reason})") from exc
    if "\x00" in value:
        raise InvalidInputError(f"{what}: contains a NUL character")
    if not value.strip():
        raise InvalidInputError(f"{what}: is empty or whitespace only")
    if len(value) > limit:
        raise InvalidInputError(f"{what}: {len(value):,} characters; the limit is {limit:,}")
    return value


def _optional_id(value: object, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError(f"{what}: expected a string or integer id, got {value!r}")
    return _text(str(value), what, limit=256)


def _metadata(value: object, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what}: expected an object, got {type(value).__name__}")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what}: not JSON-serialisable ({exc})") from exc
    return dict(value)


def _parse_one(raw: object, i: int, limit: int) -> Message:
    what = f"message {i}"
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{what}: expected an object with role and content")
    unknown = set(raw) - _KNOWN_FIELDS
    if unknown:
        raise InvalidInputError(f"{what}: unknown fields {sorted(map(str, unknown))}")
    for key in ("role", "content"):
        if key not in raw:
            raise InvalidInputError(f"{what}: missing {key!r}")
    return Message(
        role=_text(raw["role"], f"{what} role", limit=64).strip().lower(),
        content=_text(raw["content"], f"{what} content", limit=limit),
        id=_optional_id(raw.get("id"), f"{what} id"),
        name=_text(raw["name"], f"{what} name", limit=256) if raw.get("name") else None,
        timestamp=parse_datetime(raw.get("timestamp"), f"{what} timestamp"),
        metadata=_metadata(raw.get("metadata"), f"{what} metadata"),
    )


def parse_messages(raw: object, *, limit: int = MAX_CONTENT_CHARS) -> list[Message]:
    """Validate a list of message objects; raise :class:`InvalidInputError` on the first problem."""
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise InvalidInputError("messages must be a list of {role, content} objects")
    if not raw:
        raise InvalidInputError("messages is empty")
    messages = [_parse_one(item, i, limit) for i, item in enumerate(raw)]
    ids = [m.id for m in messages if m.id is not None]
    if len(ids) != len(set(ids)):
        raise InvalidInputError("message ids must be unique within one call")
    return messages
