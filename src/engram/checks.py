"""The argument checks of the public API, shared by :class:`~engram.Memory` and
:class:`~engram.Client` so that both reject the same input with the same error before doing
anything (the client: before any request)."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TypeGuard

from engram.errors import InvalidInputError, ScopeError
from engram.types import MAX_ID_CHARS, MemoryRecord, RecordKind, id_problem, short_repr
from engram.write.messages import MAX_CONTENT_CHARS

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "check_after",
    "check_kinds",
    "check_limit",
    "check_offset",
    "check_query",
    "check_record_id",
    "check_user_page",
    "int_in",
]

MAX_LIMIT = 1000
MAX_OFFSET = 10**9  # far below SQLite's 64-bit integers


def int_in(value: object, low: int, high: int | None = None) -> TypeGuard[int]:
    """Whether ``value`` is an int (bools are not) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return value >= low and (high is None or value <= high)


def check_limit(value: object, name: str = "limit") -> int:
    if not int_in(value, 1, MAX_LIMIT):
        raise InvalidInputError(f"{name} must be an integer between 1 and {MAX_LIMIT}")
    return value


def check_offset(value: object) -> int:
    if not int_in(value, 0, MAX_OFFSET):
        raise InvalidInputError(f"offset must be an integer between 0 and {MAX_OFFSET:,}")
    return value


def check_query(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError("query must be a non-empty string")
    if len(value) > MAX_CONTENT_CHARS:
        raise InvalidInputError(f"query is longer than {MAX_CONTENT_CHARS:,} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"query is not valid Unicode text ({exc.reason})") from None
    return value


def check_record_id(value: object) -> str:
    """A well-formed record id (whether it exists is the store's answer: NotFoundError)."""
    problem = id_problem(value)
    if problem is not None:
        raise InvalidInputError(f"record id {problem}")
    return value  # type: ignore[return-value]  # id_problem checked it is a str


def check_kinds(value: object) -> tuple[RecordKind, ...]:
    """Kind names or :class:`RecordKind` members; a single name (``"turn"``) means that kind."""
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence | AbstractSet) or isinstance(value, bytes | bytearray):
        raise InvalidInputError(f"kinds must be a list of record kinds, got {short_repr(value)}")
    known = {k.value: k for k in RecordKind}
    for kind in value:
        if not isinstance(kind, str) or kind not in known:
            raise InvalidInputError(f"unknown record kind {short_repr(kind)}; known: {[*known]}")
    return tuple(known[k] for k in value)


def check_after(value: object) -> MemoryRecord | None:
    """A list anchor: a record of an earlier page, or None."""
    if value is not None and not isinstance(value, MemoryRecord):
        raise InvalidInputError(f"after must be a MemoryRecord, got {short_repr(value)}")
    return value


def check_user_page(prefix: object, after: object) -> tuple[str, str | None]:
    """The arguments of a user listing: a ``prefix`` of user ids ("" for every user: what it
    holds must be allowed in an id) and ``after``, a user id of an earlier page, or None."""
    if not isinstance(prefix, str):
        raise InvalidInputError(f"prefix must be a string, got {short_repr(prefix)}")
    if len(prefix) > MAX_ID_CHARS:
        raise InvalidInputError(f"prefix is longer than {MAX_ID_CHARS} characters")
    problem = id_problem(prefix if prefix.strip() else "x" + prefix) if prefix else None
    if problem is not None:
        raise InvalidInputError(f"prefix {problem}")
    problem = None if after is None else id_problem(after)
    if problem is not None:  # a user id, so the error of one (Scope's)
        raise ScopeError(f"after (a user id) {problem}")
    return prefix, after  # type: ignore[return-value]  # id_problem checked it is a str
