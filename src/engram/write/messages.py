"""Validation of incoming messages at the boundary: everything is checked before anything is
written, so a bad message rejects the whole ``add`` call.

Limits: content :data:`MAX_CONTENT_CHARS` characters (``Memory(max_content_chars=...)``), a role
64, a name and a message id 256; metadata is a JSON object of string keys, at most
:data:`MAX_METADATA_BYTES` bytes as UTF-8 JSON and :data:`MAX_METADATA_DEPTH` levels deep, with
no NaN or infinity. Dates must lie within the years 1 to 9999 once converted to UTC."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engram.errors import InvalidInputError
from engram.types import MAX_ID_CHARS, short_repr

__all__ = [
    "MAX_CONTENT_CHARS",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_DEPTH",
    "Message",
    "parse_datetime",
    "parse_messages",
]

MAX_CONTENT_CHARS = 100_000
MAX_METADATA_BYTES = 64 * 1024  # one message's metadata, serialised as UTF-8 JSON
MAX_METADATA_DEPTH = 32  # nested objects and lists, the metadata object itself included
MAX_ROLE_CHARS = 64
MAX_NAME_CHARS = 256
# C0 controls, DEL and C1 controls: a role is part of the hashed key of a message without an id
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
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


def parse_datetime(value: object, what: str, *, utc: bool = True) -> datetime | None:
    """A timezone-aware datetime from a datetime or an ISO 8601 string; naive means UTC. One that
    cannot be represented in UTC (``0001-01-01T00:00:00+14:00``) is rejected. The result is in
    UTC, or with ``utc=False`` keeps its offset (a message's timestamp is part of the key of a
    message without an id, as written: converting it would change the ids of stored records)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            shown = short_repr(value)
            raise InvalidInputError(f"{what}: not an ISO 8601 date/time: {shown}") from exc
    if not isinstance(value, datetime):
        raise InvalidInputError(
            f"{what}: expected a datetime or ISO string, got {short_repr(value)}"
        )
    if value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise InvalidInputError(
            f"{what}: {value.isoformat()} is outside the years 1 to 9999 in UTC"
        ) from None
    return in_utc if utc else value


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


def _role(value: object, what: str) -> str:
    role = _text(value, what, limit=MAX_ROLE_CHARS)
    bad = _CONTROL.search(role)
    if bad is not None:
        raise InvalidInputError(f"{what}: contains a control character ({bad.group()!r})")
    return role.strip().lower()


def _optional_id(value: object, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError(f"{what}: expected a string or integer id, got {short_repr(value)}")
    if isinstance(value, int):
        if value.bit_length() > 4 * MAX_ID_CHARS:  # more digits than allowed: don't convert
            raise InvalidInputError(f"{what}: more than {MAX_ID_CHARS} characters")
        value = str(value)
    return _text(value, what, limit=MAX_ID_CHARS)


def _check_tree(root: Mapping[str, Any], what: str) -> None:
    """Only string keys, at most :data:`MAX_METADATA_DEPTH` levels of objects and lists (which
    also stops at a cycle), and not more values than the size limit could hold."""
    stack: list[tuple[object, int]] = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_METADATA_BYTES:
            raise InvalidInputError(f"{what}: larger than {MAX_METADATA_BYTES:,} bytes as JSON")
        if isinstance(node, Mapping):
            if not all(isinstance(key, str) for key in node):
                raise InvalidInputError(f"{what}: keys must be strings (a JSON object)")
            children: Iterable[object] = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth > MAX_METADATA_DEPTH:
            raise InvalidInputError(f"{what}: nested deeper than {MAX_METADATA_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _metadata(value: object, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what}: expected an object, got {type(value).__name__}")
    _check_tree(value, what)
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what}: not valid Unicode text ({exc.reason})") from None
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what}: not JSON-serialisable ({exc})") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidInputError(
            f"{what}: {size:,} bytes as JSON; the limit is {MAX_METADATA_BYTES:,}"
        )
    return dict(value)


def _parse_one(raw: object, i: int, limit: int) -> Message:
    what = f"message {i}"
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{what}: expected an object with role and content")
    unknown = set(raw) - _KNOWN_FIELDS
    if unknown:
        names = sorted(k if isinstance(k, str) else short_repr(k) for k in unknown)
        raise InvalidInputError(f"{what}: unknown fields {names}")
    for key in ("role", "content"):
        if key not in raw:
            raise InvalidInputError(f"{what}: missing {key!r}")
    name = raw.get("name")
    return Message(
        role=_role(raw["role"], f"{what} role"),
        content=_text(raw["content"], f"{what} content", limit=limit),
        id=_optional_id(raw.get("id"), f"{what} id"),
        name=None if name is None else _text(name, f"{what} name", limit=MAX_NAME_CHARS),
        timestamp=parse_datetime(raw.get("timestamp"), f"{what} timestamp", utc=False),
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
