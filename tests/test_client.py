"""engram.Client against real ``engram serve`` processes: the same calls on an embedded Memory and
on a Client to a server of a copy of the same file give the same answers and the same errors;
pagination, API keys and tenants, transport failures."""

from __future__ import annotations

import json
import math
import shutil
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engram import (
    LEXICAL,
    AuthenticationError,
    Client,
    EngramError,
    HashEmbedder,
    InvalidInputError,
    Memory,
    NotFoundError,
    PermissionDeniedError,
    ScopeError,
    SearchConfig,
    SqliteStore,
    StoreError,
)
from engram.llm import OpenAICompatibleLLM
from servers import ServerProcess, rest_server, rule_stub, run_engram

ASKED = datetime(2024, 6, 1, 12, tzinfo=UTC)
SEED = [
    ("u1", "s1", "2024-05-01T09:00:00+02:00", [
        {"role": "user", "content": "I adopted a beagle named Rex last week.", "id": "m1"},
        {"role": "assistant", "content": "Congratulations on Rex! Beagles are lovely.",
         "metadata": {"mood": "happy", "tags": ["dog", 1, 2.5, None, {"deep": True}]}},
        {"role": "user", "content": "I also started a job at a bakery in Porto.", "name": "Ana",
         "timestamp": "2024-05-01T09:05:00.123456+02:00"},
        {"role": "assistant", "content": "A bakery job sounds delicious."},
    ]),
    ("u1", "s2", "2024-05-20", [
        {"role": "user", "content": "Rex chewed my running shoes again."},
        {"role": "assistant", "content": "Beagles love to chew; try a chew toy."},
    ]),
    ("u2", "s1", "2024-05-03T18:30:00Z", [
        {"role": "user", "content": "My sister lives in Lisbon with her cat."},
    ]),
]  # fmt: skip


def seed(path: Path) -> None:
    with Memory(store=SqliteStore(path), embedder=HashEmbedder()) as mem:
        for user, session, date, messages in SEED:
            mem.add(messages, user_id=user, session_id=session, session_date=date)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "seed.db"
    seed(path)
    return path


@pytest.fixture(scope="module")
def open_server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """A keyless (loopback) server of an empty file, for the tests that add their own data."""
    with rest_server(tmp_path_factory.mktemp("open") / "open.db", env=server_env) as server:
        yield server


@pytest.fixture
def client(open_server: ServerProcess) -> Iterator[Client]:
    with Client(open_server.url) as c:
        yield c


# -- parity -------------------------------------------------------------------------------------

RECORDING_CLOCKS = {"created_at", "at", "expired_at"}  # when Engram recorded: per copy


def assert_same(a: Any, b: Any, *, fresh: bool, where: str = "") -> None:
    """``a == b`` field by field; scores within 1e-9; datetimes equal and timezone-aware. With
    ``fresh`` (written during the test, at different instants on each side) the recording
    clocks are only checked to be timezone-aware datetimes."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if is_dataclass(a):
        for f in fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if fresh and f.name in RECORDING_CLOCKS:
                assert (x is None) == (y is None), f"{where}.{f.name}"
                assert x is None or (x.utcoffset() is not None and y.utcoffset() is not None)
                continue
            assert_same(x, y, fresh=fresh, where=f"{where}.{f.name}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, fresh=fresh, where=f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], fresh=fresh, where=f"{where}[{key!r}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-9), f"{where}: {a} != {b}"
    elif isinstance(a, datetime):
        assert a.utcoffset() is not None and b.utcoffset() is not None, where
        assert a == b and a.utcoffset() == b.utcoffset(), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


Api = Memory | Client
Step = Callable[[Api], Any]


def outcome(step: Step, api: Api) -> Any:
    try:
        return step(api)
    except EngramError as exc:
        return (type(exc), str(exc))


def _first_turn(api: Api, user: str = "u1") -> str:
    return api.list(user_id=user, limit=1)[0].id


READS: dict[str, Step] = {
    "list": lambda m: m.list(user_id="u1"),
    "list every kind": lambda m: m.list(user_id="u1", kinds=[], limit=1000),
    "list rounds of s1": lambda m: m.list(user_id="u1", session_id="s1", kinds=["round"]),
    "list offset": lambda m: m.list(user_id="u1", limit=2, offset=3),
    "list offset past the end": lambda m: m.list(user_id="u1", offset=500),
    "list after": lambda m: m.list(user_id="u1", after=m.list(user_id="u1", limit=2)[-1]),
    "get": lambda m: m.get(_first_turn(m), user_id="u1"),
    "history": lambda m: m.history(_first_turn(m), user_id="u1"),
    "search": lambda m: m.search("beagle Rex", user_id="u1", limit=5, question_date=ASKED),
    "search lexical": lambda m: m.search("bakery", user_id="u1", config="lexical"),
    "search config": lambda m: m.search(
        "Rex shoes", user_id="u1", question_date="2024-06-01",
        config=SearchConfig(semantic=False, recency_weight=0.5, fusion="weighted"),
    ),
    "search session": lambda m: m.search("Rex", user_id="u1", session_id="s2"),
    "search sessions": lambda m: m.search_sessions("Rex", user_id="u1", question_date=ASKED),
    "search sessions preset": lambda m: m.search_sessions("cat", user_id="u2", config=LEXICAL),
    "stats of a user": lambda m: m.stats(user_id="u1"),
    "stats of nobody": lambda m: m.stats(user_id="nobody"),
}  # fmt: skip

ERRORS: dict[str, Step] = {
    "unknown record id": lambda m: m.get("0123abcd", user_id="u1"),
    "another user's record id": lambda m: m.get(_first_turn(m, "u2"), user_id="u1"),
    "history of an unknown id": lambda m: m.history("nope", user_id="u1"),
    "delete of an unknown id": lambda m: m.delete("nope", user_id="u1"),
    "update of another user's id": lambda m: m.update(_first_turn(m), "x", user_id="u2"),
    "an id with a slash": lambda m: m.get("a/history", user_id="u1"),
    "an id of dots": lambda m: m.history("..", user_id="u1"),
    "bad user id": lambda m: m.get("x", user_id="u\x01"),
    "bad user id in a search": lambda m: m.search("Rex", user_id="u\x07"),
    "bad session id": lambda m: m.add([{"role": "user", "content": "x"}], user_id="u1",
                                      session_id="s\x1f"),
    "empty user id": lambda m: m.stats(user_id=""),
    "limit 0": lambda m: m.search("Rex", user_id="u1", limit=0),
    "list limit 0": lambda m: m.list(user_id="u1", limit=0),
    "limit 1001": lambda m: m.search_sessions("Rex", user_id="u1", limit=1001),
    "negative offset": lambda m: m.list(user_id="u1", offset=-1),
    "empty query": lambda m: m.search("  ", user_id="u1"),
    "unknown preset": lambda m: m.search("Rex", user_id="u1", config="fancy"),
    "unknown kind": lambda m: m.list(user_id="u1", kinds=["turns"]),
    "bad after": lambda m: m.list(user_id="u1", after="cursor"),  # type: ignore[arg-type]
    "bad question date": lambda m: m.search("Rex", user_id="u1", question_date="yesterday"),
    "empty message": lambda m: m.add([{"role": "user", "content": " "}], user_id="u1"),
    "no messages": lambda m: m.add([], user_id="u1"),
    "unknown message field": lambda m: m.add([{"role": "u", "content": "x", "x": 1}],
                                             user_id="u1"),
    "bad timestamp": lambda m: m.add([{"role": "u", "content": "x", "timestamp": 5}],
                                     user_id="u1"),
    "bad metadata": lambda m: m.add([{"role": "u", "content": "x", "metadata": {"n": math.nan}}],
                                    user_id="u1"),
    "empty update": lambda m: m.update(_first_turn(m), "", user_id="u1"),
}  # fmt: skip


def _writes(m: Api) -> list[Any]:
    """Writes, and the reads that see them (their recording clocks differ per side)."""
    turn = _first_turn(m)
    return [
        m.add(
            [{"role": "user", "content": "I moved to Lisbon in June.", "id": 7,
              "timestamp": datetime(2024, 6, 2, 8, tzinfo=timezone(timedelta(hours=-3)))},
             {"role": "Assistant ", "content": b"How is Lisbon?", "name": "Bot"}],
            user_id="u1", session_id="s3", session_date=datetime(2024, 6, 2), agent_id="a1",
        ),
        m.add([{"role": "user", "content": "I moved to Lisbon in June.", "id": "7"}],
              user_id="u1", session_id="s3", agent_id="a1"),  # stored already
        m.update(turn, "I adopted a beagle named Max last week.", user_id="u1"),
        m.history(turn, user_id="u1"),
        m.search("Max beagle", user_id="u1", question_date=ASKED),
        m.search("Lisbon", user_id="u1", agent_id="a1", question_date=ASKED),
        m.delete(m.list(user_id="u1", session_id="s2")[0].id, user_id="u1"),
        m.list(user_id="u1", kinds=[], limit=1000),
        m.forget(user_id="u1", session_id="s1"),
        m.stats(user_id="u1"),
        m.forget(user_id="u2"),
        m.stats(),
        m.list(user_id="u2"),
    ]  # fmt: skip


def test_client_and_memory_give_the_same_answers(
    seeded: Path, tmp_path: Path, server_env: dict[str, str]
) -> None:
    local, served = tmp_path / "local.db", tmp_path / "served.db"
    shutil.copy(seeded, local)
    shutil.copy(seeded, served)
    with (
        Memory(store=SqliteStore(local), embedder=HashEmbedder()) as mem,
        rest_server(served, env=server_env) as server,
        Client(server.url) as client,
    ):
        for name, step in {**READS, **ERRORS}.items():
            assert_same(outcome(step, mem), outcome(step, client), fresh=False, where=name)
        for name, step in ERRORS.items():
            kind, _ = outcome(step, client)
            assert issubclass(kind, EngramError), name
        records = client.list(user_id="u1", session_id="s1")  # what was stored comes back
        assert records[0].message_id == "m1"
        assert records[1].metadata == SEED[0][3][1]["metadata"]
        assert records[2].name == "Ana"
        assert records[2].timestamp == datetime(2024, 5, 1, 7, 5, 0, 123456, tzinfo=UTC)
        assert all(r.timestamp.tzinfo is UTC and r.created_at.tzinfo is UTC for r in records)
        assert_same(_writes(mem), _writes(client), fresh=True, where="writes")


def test_the_errors_are_the_expected_types(client: Client) -> None:
    """The parity test shows both sides agree; this pins down what they agree on."""
    client.add([{"role": "user", "content": "hello"}], user_id="e1")
    turn = client.list(user_id="e1")[0]
    with pytest.raises(NotFoundError, match="no record"):
        client.get("0123abcd", user_id="e1")
    with pytest.raises(NotFoundError):
        client.get(turn.id, user_id="e2")
    with pytest.raises(ScopeError):
        client.list(user_id="e\x01")
    with pytest.raises(InvalidInputError, match="limit"):
        client.search("hello", user_id="e1", limit=0)
    with pytest.raises(InvalidInputError, match="query"):
        client.search("", user_id="e1")
    with pytest.raises(InvalidInputError, match="candidates"):  # the server's limit, sent back
        client.search("hello", user_id="e1", config=SearchConfig(candidates=5000))


def _llm_steps(m: Api) -> list[Any]:
    """The LLM layer's calls, and the reads of what they wrote."""
    say = [{"role": "user", "content": "I live in Paris. I love sailing."}]
    move = [{"role": "user", "content": "Big news: I moved to Berlin yesterday."}]
    steps: list[Step] = [
        lambda m: m.add(say, user_id="f1", session_id="s1", session_date="2023-01-10"),
        lambda m: m.add(move, user_id="f1", session_id="s2", session_date="2023-06-01",
                        extract="sync"),
        lambda m: m.list(user_id="f1", kinds=["fact"]),
        lambda m: m.list(user_id="f1", kinds=["fact"], as_of="2023-03-01"),
        lambda m: m.list(user_id="f1", kinds=[], as_of=datetime(2023, 3, 1, tzinfo=UTC)),
        lambda m: m.search_facts("lives", user_id="f1"),
        lambda m: m.search_facts("lives", user_id="f1", as_of="2023-02-01", limit=3),
        lambda m: m.search("live", user_id="f1", as_of="2023-03-01", config="lexical"),
        lambda m: m.answer("Where does the user live?", user_id="f1", question_date="2023-07-01"),
        lambda m: m.answer("Where?", user_id="f1", question_date="2023-03-01", budget=200),
        lambda m: m.history(m.list(user_id="f1", kinds=["fact"])[0].id, user_id="f1"),
        lambda m: m.add([{"role": "user", "content": "I love chess."}], user_id="f2",
                        session_date="2023-08-01", extract="background"),
        lambda m: m.stats(user_id="f2"),
        lambda m: m.process_pending(user_id="f2", limit=5),
        lambda m: m.process_pending(),
        lambda m: m.stats(user_id="f1"),
        lambda m: m.stats(user_id="f2"),
        lambda m: m.add(say, user_id="f1", extract="now"),  # type: ignore[arg-type]
        lambda m: m.answer("Where?", user_id="f1", budget=5),
        lambda m: m.answer("  ", user_id="f1"),
        lambda m: m.process_pending(limit=0),
        lambda m: m.search_facts("x", user_id="f1", as_of="soon"),
    ]  # fmt: skip
    return [outcome(step, m) for step in steps]


def test_client_and_memory_give_the_same_llm_answers(tmp_path: Path) -> None:
    """Facts, as-of reads, answers and the job queue: a Memory with an LLM, and a Client of a
    server with the same LLM (the rule-model stub), on two empty files."""
    with (
        rule_stub() as stub,
        OpenAICompatibleLLM(stub.base_url, "rule-model", max_attempts=1) as llm,
        Memory(store=SqliteStore(tmp_path / "l.db"), embedder=HashEmbedder(), llm=llm) as mem,
        rest_server(tmp_path / "s.db", env=stub.env(ENGRAM_WORKER_INTERVAL="0")) as server,
        Client(server.url) as client,
    ):
        local, remote = _llm_steps(mem), _llm_steps(client)
        assert_same(local, remote, fresh=True, where="llm")
        assert [f.text for f in remote[2]] == ["user lives in Paris", "user likes sailing",
                                               "user lives in Berlin"]  # fmt: skip
        assert remote[8].text == "user lives in Berlin" and remote[8].citations
        assert remote[13].done == 1 and remote[12].pending_jobs == 1


# -- pagination ---------------------------------------------------------------------------------


def test_pages_with_after_match_memory(tmp_path: Path, server_env: dict[str, str]) -> None:
    roles = ("user", "assistant")  # rounds, windows and two sentence keys a turn: > 1000 records
    texts = [f"This is note {i}. It matters a lot." for i in range(250)]
    messages = [{"role": roles[i % 2], "content": text} for i, text in enumerate(texts)]
    local, served = tmp_path / "local.db", tmp_path / "served.db"
    with Memory(store=SqliteStore(local), embedder=HashEmbedder()) as mem:
        mem.add(messages, user_id="p", session_id="s", session_date="2024-01-01")
    shutil.copy(local, served)
    with (
        Memory(store=SqliteStore(local), embedder=HashEmbedder()) as mem,
        rest_server(served, env=server_env) as server,
        Client(server.url) as client,
    ):
        for api in (mem, client):
            pages, after = [], None
            while True:
                page = api.list(user_id="p", limit=100, after=after)
                if not page:
                    break
                pages.append(page)
                after = page[-1]
            assert [len(p) for p in pages] == [100, 100, 50]
            assert [r.text for p in pages for r in p] == [m["content"] for m in messages]
        every = mem.list(user_id="p", kinds=[], limit=1000)
        assert sum(mem.stats(user_id="p").records.values()) > 1100
        cases = ((0, 1000), (150, 100), (999, 10), (1000, 5), (1090, 50), (1500, 3), (10**9, 1))
        for offset, limit in cases:
            want = mem.list(user_id="p", kinds=[], offset=offset, limit=limit)
            got = client.list(user_id="p", kinds=[], offset=offset, limit=limit)
            assert_same(want, got, fresh=False, where=f"offset {offset}")
        anchor = every[10]
        assert_same(
            mem.list(user_id="p", kinds=[], after=anchor, offset=1050, limit=7),
            client.list(user_id="p", kinds=[], after=anchor, offset=1050, limit=7),
            fresh=False, where="after and offset",
        )  # fmt: skip


# -- keys and tenants ---------------------------------------------------------------------------


def create_key(db: Path, keys: Path, tenant: str, *extra: str) -> str:
    done = run_engram("--db", str(db), "keys", "create", "--tenant", tenant, "--keys", str(keys),
                      *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


def test_keys_scope_a_client_to_its_tenant(tmp_path: Path, server_env: dict[str, str]) -> None:
    db, keys = tmp_path / "keyed.db", tmp_path / "keyed.keys"
    wanted = [("acme",), ("globex",), ("acme", "--read-only"), ("acme", "--users", "alice")]
    with ThreadPoolExecutor(len(wanted)) as pool:  # one engram process each, side by side
        acme, globex, reader, alice_only = pool.map(lambda a: create_key(db, keys, *a), wanted)
    hello = [{"role": "user", "content": "hello from acme"}]
    with rest_server(db, "--keys", str(keys), env=server_env) as server:
        url = server.url
        with Client(url, api_key=acme) as mine, Client(url, api_key=globex) as theirs:
            [turn] = mine.add(hello, user_id="alice", session_date="2024-01-01")
            assert turn.user_id == "alice"
            assert [r.id for r in mine.list(user_id="alice")] == [turn.id]
            assert theirs.list(user_id="alice") == []  # another tenant's alice
            assert theirs.search("hello acme", user_id="alice") == []
            with pytest.raises(NotFoundError):
                theirs.get(turn.id, user_id="alice")
            assert mine.stats(user_id="alice").records["turn"] == 1
            assert theirs.stats(user_id="alice").records == {}
            with pytest.raises(PermissionDeniedError, match="user_id"):
                mine.stats()  # store-wide counts are for the open mode
        with Client(url, api_key=reader) as read_only:
            assert read_only.get(turn.id, user_id="alice") == turn
            with pytest.raises(PermissionDeniedError, match="read-only"):
                read_only.add(hello, user_id="alice")
            with pytest.raises(PermissionDeniedError):
                read_only.forget(user_id="alice")
        with Client(url, api_key=alice_only) as limited:
            assert limited.list(user_id="alice")[0].id == turn.id
            with pytest.raises(PermissionDeniedError, match="bob"):
                limited.list(user_id="bob")
        with Client(url) as anonymous, pytest.raises(AuthenticationError, match="API key"):
            anonymous.list(user_id="alice")
        with Client(url, api_key="engram_not-a-key") as wrong, pytest.raises(AuthenticationError):
            wrong.list(user_id="alice")


# -- transport -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_unreachable_server_is_a_store_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with (
        Client(url) as client,
        pytest.raises(StoreError, match=f"cannot reach the server at {url}"),
    ):
        client.stats(user_id="u")


def test_a_server_that_does_not_answer_is_a_store_error() -> None:
    with socket.socket() as listener:  # accepts connections (the backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with Client(url, timeout=0.3) as client, pytest.raises(StoreError, match=r"within 0\.3 s"):
            client.list(user_id="u")


def test_a_closed_client_refuses(open_server: ServerProcess) -> None:
    client = Client(open_server.url)
    client.close()
    client.close()
    with pytest.raises(StoreError, match="closed"):
        client.stats(user_id="u")
