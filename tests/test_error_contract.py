"""The error contract of the public API (issue #8): bad input raises an :class:`EngramError`
subclass and writes nothing; a well-formed but unknown record id is a :class:`NotFoundError`.
Each case here was reproduced as a raw Python exception (or a silent mistake) before the fix."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from engram import InvalidInputError, Memory, NotFoundError, RecordKind, ScopeError
from engram.write.messages import MAX_METADATA_BYTES, MAX_METADATA_DEPTH

HI = [{"role": "user", "content": "hi"}]
BAD_RECORD_IDS = [
    [], 2**64, -1, 0, True, None, 1.5, b"ok", bytearray(b"ok"), ("a",),
    "", "  ", "a" * 257, "a\x00b", "a\x1fb", "a\nb", "a\x7fb", "a\x85b", "\udcff", "a\ud800",
]  # fmt: skip
BAD_SCOPE_IDS = [
    0, False, True, [], "", " ", 2**64, b"u", "a" * 257, "\udcff", "a\x00", "a\x1fb", "a\tb",
    "a\x7f", "a\x9f",
]  # fmt: skip
OUT_OF_UTC = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:00:00-14:00",
    datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
    datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
]


def short(value: object) -> str:
    """A test id: ``repr`` cut short (and no 5,000-digit conversion)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"int of {value.bit_length()} bits"
    return repr(value)[:40]


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


def with_field(**fields: object) -> list[dict[str, object]]:
    return [{"role": "user", "content": "hi", **fields}]


def unchanged(mem: Memory, call: Callable[[], object], error: type[Exception]) -> None:
    """``call`` raises ``error`` and the store is exactly as before."""
    before = (mem.stats(), mem.list(user_id="u", kinds=list(RecordKind), limit=1000))
    with pytest.raises(error):
        call()
    assert (mem.stats(), mem.list(user_id="u", kinds=list(RecordKind), limit=1000)) == before


@pytest.fixture
def turn(mem: Memory) -> str:
    return mem.add([{"role": "user", "content": "I live in Lisbon."}], user_id="u")[0].id


# -- record ids -----------------------------------------------------------------------------------


def record_call(mem: Memory, op: str, record_id: object) -> Callable[[], object]:
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: mem.get(record_id, user_id="u"),  # type: ignore[arg-type]
        "delete": lambda: mem.delete(record_id, user_id="u"),  # type: ignore[arg-type]
        "update": lambda: mem.update(record_id, "new text", user_id="u"),  # type: ignore[arg-type]
        "history": lambda: mem.history(record_id, user_id="u"),  # type: ignore[arg-type]
    }
    return calls[op]


@pytest.mark.parametrize("op", ["get", "delete", "update", "history"])
@pytest.mark.parametrize("bad", BAD_RECORD_IDS, ids=short)
def test_a_malformed_record_id_is_invalid_input(
    mem: Memory, turn: str, op: str, bad: object
) -> None:
    unchanged(mem, record_call(mem, op, bad), InvalidInputError)


@pytest.mark.parametrize("op", ["get", "delete", "update", "history"])
@pytest.mark.parametrize("unknown", ["0" * 32, "no such id", "x" * 256, "a:b/c#d é"])
def test_a_well_formed_unknown_record_id_is_not_found(
    mem: Memory, turn: str, op: str, unknown: str
) -> None:
    unchanged(mem, record_call(mem, op, unknown), NotFoundError)


def test_another_users_record_is_not_found(mem: Memory, turn: str) -> None:
    with pytest.raises(NotFoundError):
        mem.get(turn, user_id="v")


# -- list: offset and kinds -----------------------------------------------------------------------


@pytest.mark.parametrize("offset", [2**63, 2**64, 10**9 + 1, -1, True, 1.0, "1", None], ids=short)
def test_a_bad_offset_is_invalid_input(mem: Memory, turn: str, offset: object) -> None:
    with pytest.raises(InvalidInputError, match="offset"):
        mem.list(user_id="u", offset=offset)  # type: ignore[arg-type]


def test_the_largest_offset_is_accepted(mem: Memory, turn: str) -> None:
    assert mem.list(user_id="u", offset=10**9) == []


@pytest.mark.parametrize(
    "kinds", [None, 5, [None], ["nope"], [[]], b"turn", {"turn": 1}, "t"], ids=short
)
def test_bad_kinds_are_invalid_input(mem: Memory, turn: str, kinds: object) -> None:
    with pytest.raises(InvalidInputError, match="kind"):
        mem.list(user_id="u", kinds=kinds)  # type: ignore[arg-type]


@pytest.mark.parametrize("kinds", ["turn", RecordKind.TURN, ["turn"], ("turn", "turn"), {"turn"}])
def test_one_kind_may_be_given_as_a_string(mem: Memory, turn: str, kinds: Any) -> None:
    assert [r.id for r in mem.list(user_id="u", kinds=kinds)] == [turn]


# -- scope ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_SCOPE_IDS, ids=short)
@pytest.mark.parametrize("field", ["user_id", "session_id", "agent_id"])
def test_a_bad_scope_id_in_add_is_a_scope_error(mem: Memory, field: str, bad: object) -> None:
    kwargs: dict[str, Any] = {"user_id": "u", field: bad}
    unchanged(mem, lambda: mem.add(HI, **kwargs), ScopeError)


@pytest.mark.parametrize("bad", ["\udcff", "a\x1fb", "", 0, []], ids=short)
def test_a_bad_user_id_is_a_scope_error_everywhere(mem: Memory, turn: str, bad: Any) -> None:
    calls: list[Callable[[], object]] = [
        lambda: mem.get(turn, user_id=bad),
        lambda: mem.delete(turn, user_id=bad),
        lambda: mem.update(turn, "x", user_id=bad),
        lambda: mem.history(turn, user_id=bad),
        lambda: mem.list(user_id=bad),
        lambda: mem.search("lisbon", user_id=bad),
        lambda: mem.search_sessions("lisbon", user_id=bad),
        lambda: mem.forget(user_id=bad),
        lambda: mem.stats(user_id=bad),
    ]
    for call in calls:
        unchanged(mem, call, ScopeError)


@pytest.mark.parametrize("bad", ["\udcff", "s\x1fx", "", 0], ids=short)
def test_a_bad_session_or_agent_filter_is_a_scope_error(mem: Memory, turn: str, bad: Any) -> None:
    for call in (
        lambda: mem.list(user_id="u", session_id=bad),
        lambda: mem.list(user_id="u", agent_id=bad),
        lambda: mem.search("lisbon", user_id="u", session_id=bad),
        lambda: mem.search_sessions("lisbon", user_id="u", agent_id=bad),
        lambda: mem.forget(user_id="u", session_id=bad),
    ):
        unchanged(mem, call, ScopeError)


def test_only_none_means_the_default_session(mem: Memory) -> None:
    assert mem.add(HI, user_id="u", session_id=None)[0].session_id == "default"
    for falsy in (0, False, [], ""):
        with pytest.raises(ScopeError, match="session_id"):
            mem.add(HI, user_id="u", session_id=falsy)  # type: ignore[arg-type]


def test_ids_with_the_unit_separator_cannot_collide_across_users(mem: Memory) -> None:
    """Defect 6: record ids hash "\\x1f".join((user, session, kind, key)); a separator inside
    an id made ("alice", "s\\x1fx") and ("alice\\x1fs", "x") derive the same record id."""
    with pytest.raises(ScopeError, match="control character"):
        mem.add(HI, user_id="alice", session_id="s\x1fx")
    with pytest.raises(ScopeError, match="control character"):
        mem.add(HI, user_id="alice\x1fs", session_id="x")
    [record] = mem.add(HI, user_id="alice", session_id="x")
    assert mem.get(record.id, user_id="alice") == record


@pytest.mark.parametrize("role", ["us\x1fer", "user\x00", "\x85", "a\udcff"], ids=short)
def test_a_role_with_control_characters_is_invalid(mem: Memory, role: str) -> None:
    unchanged(
        mem, lambda: mem.add([{"role": role, "content": "hi"}], user_id="u"), InvalidInputError
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "\udcff"},
        {"name": "\udcff"},
        {"id": 10**5000},
        {"id": 10**300},
        {"id": True},
        {"name": ""},
        {"name": 0},
        {"name": []},
        {"id": ""},
    ],
    ids=[
        "surrogate id",
        "surrogate name",
        "5000-digit id",
        "300-digit id",
        "True id",
        "empty name",
        "0 name",
        "[] name",
        "empty id",
    ],
)
def test_bad_message_ids_and_names_are_invalid(mem: Memory, fields: dict[str, Any]) -> None:
    unchanged(mem, lambda: mem.add(with_field(**fields), user_id="u"), InvalidInputError)


def test_message_ids_may_hold_printable_separators(mem: Memory) -> None:
    [record] = mem.add(with_field(id="a\x1fb c/d#é"), user_id="u")
    assert mem.get(record.id, user_id="u").message_id == "a\x1fb c/d#é"


# -- metadata -------------------------------------------------------------------------------------


BAD_METADATA = {
    "surrogate key": {"\udcff": 1},
    "surrogate value": {"a": "\udcff"},
    "nested surrogate": {"a": ["ok", {"b": "\ud800"}]},
    "3000 deep": nested(3000),
    "one too deep": nested(MAX_METADATA_DEPTH + 1),
    "one byte too big": {"a": "x" * MAX_METADATA_BYTES},
    "50 MB": {"a": "x" * 50_000_000},
    "int key": {1: "int key"},
    "nan": {"a": float("nan")},
    "inf": {"a": float("inf")},
    "set": {"a": {1, 2}},
    "5000-digit int": {"a": 10**5000},
    "list of pairs": [("a", 1)],
}


@pytest.mark.parametrize("metadata", list(BAD_METADATA.values()), ids=list(BAD_METADATA))
def test_bad_metadata_is_invalid_input(mem: Memory, metadata: object) -> None:
    unchanged(mem, lambda: mem.add(with_field(metadata=metadata), user_id="u"), InvalidInputError)


def test_a_cyclic_metadata_object_is_invalid_input(mem: Memory) -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    unchanged(mem, lambda: mem.add(with_field(metadata=cyclic), user_id="u"), InvalidInputError)


def test_metadata_at_the_limits_is_stored(mem: Memory) -> None:
    big = {"a": "x" * (MAX_METADATA_BYTES - 20)}
    fine = (nested(MAX_METADATA_DEPTH), big, {"é": ["ünïcödé", 1.5, None, True]})
    for n, metadata in enumerate(fine):
        [record] = mem.add(with_field(metadata=metadata), user_id="u", session_id=f"s{n}")
        assert mem.get(record.id, user_id="u").metadata == metadata


# -- dates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("when", OUT_OF_UTC, ids=str)
def test_a_date_outside_the_utc_range_is_invalid(mem: Memory, turn: str, when: object) -> None:
    unchanged(mem, lambda: mem.add(with_field(timestamp=when), user_id="u"), InvalidInputError)
    unchanged(mem, lambda: mem.add(HI, user_id="u", session_date=when), InvalidInputError)  # type: ignore[arg-type]
    for call in (
        lambda: mem.search("lisbon", user_id="u", question_date=when),  # type: ignore[arg-type]
        lambda: mem.search_sessions("lisbon", user_id="u", question_date=when),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidInputError, match="date"):
            call()


def test_session_and_question_dates_are_normalised_to_utc(mem: Memory) -> None:
    from engram.write.messages import parse_datetime

    for when in ("2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8), "2024-05-01T08:00Z"):
        parsed = parse_datetime(when, "session_date")
        assert parsed == datetime(2024, 5, 1, 8, tzinfo=UTC) and parsed.tzinfo is UTC
    [turn] = mem.add(HI, user_id="u", session_date="2024-05-01T10:00:00+02:00")
    assert turn.timestamp == datetime(2024, 5, 1, 8, tzinfo=UTC) and turn.timestamp.tzinfo is UTC
    extreme = "0001-01-01T00:00:00-01:00"
    assert mem.add(with_field(timestamp=extreme), user_id="u")[0].timestamp.year == 1


def test_record_ids_of_existing_databases_do_not_change(mem: Memory) -> None:
    """Ids as derived before the fix: re-importing a conversation must store nothing new, so a
    message's timestamp keeps its offset in the key of a message without an id."""
    records = mem.add(
        [{"role": "user", "content": "a", "timestamp": "2024-05-01T10:00:00+02:00"},
         {"role": "user", "content": "b", "id": "m1"}, {"role": "assistant", "content": "c"}],
        user_id="u", session_id="s",
    )  # fmt: skip
    assert [r.id for r in records] == [
        "0e39420c23abdf9604a8828e88a9a53d", "f9665123c150afb662d521cf410699e6",
        "c736cda22d40c1670959c1da49c41fe5",
    ]  # fmt: skip
    assert records[0].timestamp == datetime(2024, 5, 1, 8, tzinfo=UTC)


# -- queries and limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["lisbon \udcff", "", " ", None, 5, b"lisbon"], ids=short)
def test_a_bad_query_is_invalid_input(mem: Memory, turn: str, query: Any) -> None:
    for call in (
        lambda: mem.search(query, user_id="u"),
        lambda: mem.search_sessions(query, user_id="u"),
    ):
        with pytest.raises(InvalidInputError):
            call()


@pytest.mark.parametrize("limit", [0, 1001, 2**64, None, "5", 1.0, True], ids=short)
def test_a_bad_search_sessions_limit_is_invalid_input(mem: Memory, limit: Any) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        mem.search_sessions("lisbon", user_id="u", limit=limit)


@pytest.mark.parametrize("bad", [None, "x", -1, 1.5, True], ids=short)
def test_a_bad_max_content_chars_is_invalid_input(mem: Memory, bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="max_content_chars"):
        Memory(store=mem.store, embedder=mem.embedder, max_content_chars=bad)
