"""Property-based tests of the error contract (issue #8) across the whole public ``Memory`` API.

Programs of random calls (``add`` with messages of random shapes, types and values, ``get``,
``list``, ``search``, ``search_sessions``, ``update``, ``delete``, ``forget``, ``history``,
``stats``) run on a small seeded memory, with ids, offsets, kinds, dates and metadata drawn from
valid values, random text (lone surrogates and control characters included), huge or deep values
and values of the wrong type. The oracle: every call returns or raises an :class:`EngramError`,
never any other exception; a call that fails changes nothing (records, history, stats); every
turn a successful ``add`` returns is stored for its user.

Two tiers. The fast one runs in every ``pytest`` (a few hundred calls, seconds). The slow one,
at least 10,000 calls, runs only when asked::

    ENGRAM_FUZZ_EXAMPLES=2500 pytest -m fuzz tests/test_fuzz_api.py -s

(``ENGRAM_FUZZ_EXAMPLES`` programs of up to 8 calls each; ``-s`` prints the counts.)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram import EngramError, HashEmbedder, Memory, RecordFilter, RecordKind, SqliteStore
from engram.types import Scope
from engram.write.ingest import record_id

FUZZ_EXAMPLES = int(os.environ.get("ENGRAM_FUZZ_EXAMPLES", "0") or 0)
FAST = settings(
    max_examples=40, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
USERS = ("u", "v")
SEED = [
    {"role": "user", "content": "I moved to Lisbon in May. The flat is by the river.", "id": "m1"},
    {"role": "assistant", "content": "Lisbon is lovely in spring!", "name": "Ada", "id": "m2"},
    {"role": "user", "content": "We adopted a beagle named Rex.", "timestamp": "2024-05-01"},
]  # fmt: skip


class Shown(dict[str, Any]):
    """A prebuilt huge or deep value that a failing example shows by name, not by ``repr``."""

    def __init__(self, name: str, value: dict[str, Any]) -> None:
        super().__init__(value)
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


def seeded() -> Memory:
    mem = Memory(store=SqliteStore(":memory:"), embedder=HashEmbedder(dim=32))
    mem.add(SEED, user_id="u", session_id="s", agent_id="bot")
    mem.add(SEED[:1], user_id="v")
    return mem


def _seed_ids() -> list[str]:
    with seeded() as mem:
        return [r.id for r in mem.list(user_id="u", kinds=list(RecordKind), limit=1000)]


SEED_IDS = _seed_ids()

# -- values ---------------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
NASTY_TEXT = st.sampled_from(
    ["", " ", "\t\n", "a\x1fb", "s\x1fx", "\x00", "a\x00b", "\udcff", "a\ud800", "\x85", "\x7f",
     "\u2028", "x" * 256, "x" * 257, "default", "turn", "0" * 32, "é" * 300, "\U0001f600"]
)  # fmt: skip
HUGE_INTS = st.sampled_from([2**31, 2**62, 2**63, 2**64, -(2**63) - 1, 10**300, 2**10000])
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(), HUGE_INTS, st.floats(), st.binary(max_size=6),
    st.builds(bytearray, st.binary(max_size=6)), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.tuples(ANY_TEXT),
    st.frozensets(st.integers(), max_size=2), st.just(object()),
)  # fmt: skip


def usually(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten (so that calls get past their first check and into the
    store), else ``bad``."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 0 else good)


def mostly(*good: object) -> st.SearchStrategy[Any]:
    """One of ``good``, else random text, nasty text or a value of the wrong type."""
    return usually(st.sampled_from(good), st.one_of(ANY_TEXT, NASTY_TEXT, JUNK))


def anything(*good: object) -> st.SearchStrategy[Any]:
    """One of ``good`` as often as random text, nasty text or a value of the wrong type."""
    return st.one_of(st.sampled_from(good), ANY_TEXT, NASTY_TEXT, JUNK)


OFFSETS = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23))
ZONES = st.builds(timezone, OFFSETS)
GOOD_DATES = st.one_of(
    st.none(),
    st.sampled_from(["0001-01-01", "9999-12-31", "2024-05-01", "2024-05-01T10:00:00Z",
                     "2024-05-01T10:00:00+02:00", " 2023-12-31T23:59:59.999999-05:00 "]),
    st.datetimes(),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=ZONES),
)  # fmt: skip
BAD_DATES = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00", "yesterday", "",
                     "2024-13-01", "\udcff", "2024-05-01T10:00:00+24:00"]),
    st.sampled_from([datetime.min, datetime.max]).flatmap(
        lambda d: st.builds(lambda zone: d.replace(tzinfo=zone), ZONES)
    ),
    ANY_TEXT, JUNK,
)  # fmt: skip
DATES = usually(GOOD_DATES, BAD_DATES)


def json_values(text: st.SearchStrategy[str], floats: st.SearchStrategy[float]) -> Any:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )


GOOD_JSON = json_values(st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False))
ANY_JSON = json_values(ANY_TEXT, st.floats())
BIG_METADATA = st.sampled_from(
    [Shown("3000 deep", nested(3000)), Shown("33 deep", nested(33)), Shown("32 deep", nested(32)),
     Shown("70 KB", {"a": "x" * 70_000}), Shown("64 KB - 20", {"a": "x" * (64 * 1024 - 20)}),
     Shown("wide", {str(i): i for i in range(70_000)}), Shown("int keys", {1: 2})]  # type: ignore[dict-item]
)  # fmt: skip
METADATA = usually(
    st.none() | st.dictionaries(st.text(max_size=8), GOOD_JSON, max_size=3),
    st.one_of(st.dictionaries(ANY_TEXT, ANY_JSON, max_size=3), BIG_METADATA, JUNK, ANY_JSON),
)
CONTENT = usually(
    st.sampled_from(["hi", "I live in Lisbon. I moved in May. It is sunny there.", "Rex!"])
    | st.text(min_size=1, max_size=40),
    st.one_of(st.sampled_from(["x" * 100_001, "", "   "]), ANY_TEXT, NASTY_TEXT, JUNK),
)
MESSAGE = st.fixed_dictionaries(
    {"role": mostly("user", "assistant", "system", " USER "), "content": CONTENT},
    optional={
        "id": mostly("m1", "m2", "m9", 7, -1, 2**64), "name": mostly("Ada", "Bo"),
        "timestamp": DATES, "metadata": METADATA,
    },
)  # fmt: skip
ODD_MESSAGE = st.one_of(
    MESSAGE.map(lambda m: {**m, "colour": "red"}),
    MESSAGE.map(lambda m: {k: v for k, v in m.items() if k != "content"}),
    JUNK,
)
MESSAGES = usually(
    st.lists(MESSAGE, min_size=1, max_size=4),
    st.one_of(st.lists(st.one_of(MESSAGE, ODD_MESSAGE), max_size=4), JUNK, ANY_TEXT),
)
USER = mostly(*USERS)
SESSION = mostly(None, "s", "default", "t")
AGENT = mostly(None, "bot")
RECORD = mostly(*SEED_IDS, "0" * 32)
KINDS = st.one_of(
    st.lists(mostly(*RecordKind), max_size=3), st.sampled_from(["turn", "round", "nope"]), JUNK
)
LIMIT = mostly(1, 10, 1000, 1001, 0)
OFFSET = mostly(0, 1, 10**9, 10**9 + 1, 2**63, -1)
QUERY = mostly("lisbon", "where does the user live?", "rex the beagle", "x" * 100_001)
CONFIG = mostly(None, "hybrid", "lexical", "semantic")

# -- calls ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __repr__(self) -> str:
        return f"{self.method}(*{self.args!r}, **{self.kwargs!r})"


def call(method: str, *args: st.SearchStrategy[Any], **optional: Any) -> st.SearchStrategy[Call]:
    required = {k: v for k, v in optional.items() if k == "user_id"}
    rest = {k: v for k, v in optional.items() if k != "user_id"}
    return st.builds(
        lambda a, kw: Call(method, tuple(a), kw),
        st.tuples(*args),
        st.fixed_dictionaries(required, optional=rest),
    )


CALLS = st.one_of(
    call("add", MESSAGES, user_id=USER, session_id=SESSION, session_date=DATES, agent_id=AGENT),
    call("get", RECORD, user_id=USER),
    call("update", RECORD, CONTENT, user_id=USER),
    call("delete", RECORD, user_id=USER),
    call("history", RECORD, user_id=USER),
    call("list", user_id=USER, session_id=SESSION, agent_id=AGENT, kinds=KINDS, limit=LIMIT,
         offset=OFFSET),
    call("search", QUERY, user_id=USER, limit=LIMIT, session_id=SESSION, agent_id=AGENT,
         question_date=DATES, config=CONFIG),
    call("search_sessions", QUERY, user_id=USER, limit=LIMIT, agent_id=AGENT,
         question_date=DATES, config=CONFIG),
    call("forget", user_id=USER, session_id=SESSION),
    call("stats", user_id=mostly(None, *USERS)),
)  # fmt: skip
WRITES = {"add", "update", "delete", "forget"}
TALLY: Counter[str] = Counter()


def snapshot(mem: Memory) -> object:
    """Everything a call could change: stats, every record of the users, their histories."""
    records = {
        user: mem.store.list(RecordFilter(user, kinds=tuple(RecordKind)), limit=1000)
        for user in USERS
    }
    history = {(r.user_id, r.id): mem.store.history(r.user_id, r.id) for rs in records.values()
               for r in rs}  # fmt: skip
    return mem.store.stats(), records, history


def check(mem: Memory, c: Call) -> None:
    """The oracle for one call."""
    before = snapshot(mem) if c.method in WRITES else None
    try:
        result = getattr(mem, c.method)(*c.args, **c.kwargs)
    except EngramError:
        TALLY["engram_error"] += 1
        TALLY[f"{c.method} error"] += 1
        assert before is None or snapshot(mem) == before, f"{c!r} failed but wrote something"
        return
    finally:
        TALLY["calls"] += 1
    TALLY["ok"] += 1
    TALLY[f"{c.method} ok"] += 1
    if c.method == "add":
        for turn in result:
            assert mem.get(turn.id, user_id=c.kwargs["user_id"]).id == turn.id


def run_program(calls: list[Call]) -> None:
    with seeded() as mem:
        for c in calls:
            check(mem, c)


PROGRAMS = st.lists(CALLS, min_size=1, max_size=8)

# -- the fast tier --------------------------------------------------------------------------------


@FAST
@given(PROGRAMS)
def test_random_programs_raise_only_engram_errors(calls: list[Call]) -> None:
    run_program(calls)


@FAST
@given(st.sampled_from(["get", "update", "delete", "history"]), anything(*SEED_IDS), USER)
def test_record_ids_of_any_type(method: str, rid: Any, user: Any) -> None:
    args = (rid, "new text") if method == "update" else (rid,)
    run_program([Call(method, args, {"user_id": user})])


@FAST
@given(
    st.lists(MESSAGE, min_size=1, max_size=3),
    anything(*USERS),
    anything(None, "s"),
    DATES,
    anything(None, "bot"),
)
def test_add_of_any_messages(messages: Any, user: Any, session: Any, date: Any, agent: Any) -> None:
    kwargs = {"user_id": user, "session_id": session, "session_date": date, "agent_id": agent}
    run_program([Call("add", (messages,), kwargs)])


@FAST
@given(ANY_TEXT | NASTY_TEXT, ANY_TEXT | NASTY_TEXT)
def test_valid_scope_ids_derive_unambiguous_record_ids(user: str, session: str) -> None:
    """Defect 6: with ids that Scope accepts, the joined key splits back into its parts."""
    try:
        Scope(user, None, session)
    except EngramError:
        return
    raw = "\x1f".join((user, session, RecordKind.TURN.value, "id:a\x1fb"))
    assert raw.split("\x1f", 3) == [user, session, "turn", "id:a\x1fb"]
    other = record_id(user + "\x1f" + session, "x", RecordKind.TURN, "id:a\x1fb")
    assert record_id(user, session + "\x1fx", RecordKind.TURN, "id:a\x1fb") == other  # the hazard
    with pytest.raises(EngramError):
        Scope(user + "\x1f" + session)


# -- the slow tier --------------------------------------------------------------------------------


@pytest.mark.fuzz
@pytest.mark.skipif(FUZZ_EXAMPLES <= 0, reason="set ENGRAM_FUZZ_EXAMPLES=N to run N programs")
def test_fuzz_the_whole_api(capsys: pytest.CaptureFixture[str]) -> None:
    TALLY.clear()
    slow = settings(FAST, max_examples=FUZZ_EXAMPLES, derandomize=False)
    runner: Callable[[], None] = slow(given(PROGRAMS)(run_program))
    runner()
    with capsys.disabled():
        print(f"\nfuzz: {dict(sorted(TALLY.items()))} (no other exception, nothing half-written)")
    assert TALLY["calls"] >= FUZZ_EXAMPLES
