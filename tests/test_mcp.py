"""``engram mcp`` as MCP hosts run it: a real child process, driven by the MCP SDK's own client
over stdio and over streamable HTTP. Each test checks one of the ways MCP memory servers are
known to fail: an add that reports success but stores nothing, a search that misses what was
just added, a scope that changes after a restart, the same memory several times in one result,
and one tenant's memories reaching another."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from engram import Hit, MemoryRecord, RecordKind
from engram.server.keys import KeyStore
from engram.server.mcp import load_mcp_settings
from engram.server.mcp_tools import MCP_SESSION, dedupe, note_id
from engram.server.settings import user_data_db
from servers import ServerProcess, engram_env, rule_stub, start_server

TIMEOUT = 90.0  # seconds for one test's whole conversation with its servers
BASE_TOOLS = {"remember", "search_memory", "list_memories", "get_memory", "delete_memory"}


def mcp_env(home: Path, **extra: str) -> dict[str, str]:
    """A child's environment: its home (so its default database) under the test's folder."""
    env = engram_env(HOME=str(home), **extra)
    if "XDG_DATA_HOME" not in extra:
        env.pop("XDG_DATA_HOME", None)
    return env


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(TIMEOUT):
            await test()

    anyio.run(bounded)


@asynccontextmanager
async def stdio_mcp(*args: str, env: dict[str, str], cwd: Path, log: Path) -> AsyncIterator[Client]:
    """``engram --embedder hash mcp ARGS`` as a host starts it: a child on stdin/stdout, in
    ``cwd``; what it writes on stderr goes to ``log``."""
    cwd.mkdir(parents=True, exist_ok=True)
    command = ["-m", "engram.cli.main", "--embedder", "hash", "mcp", *args]
    params = StdioServerParameters(command=sys.executable, args=command, env=env, cwd=cwd)
    with log.open("a", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            yield client


@asynccontextmanager
async def http_mcp(url: str, key: str | None = None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http,
        Client(streamable_http_client(url, http_client=http), cache=None) as client,
    ):
        yield client


def text_of(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """The structured result of a call that must succeed."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def fails(client: Client, tool: str, **args: Any) -> str:
    """The message of a call that must be a tool error (isError), not a success."""
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} succeeded: {result.structured_content}"
    return text_of(result)


async def texts(client: Client, session_id: str | None = None) -> list[str]:
    args = {} if session_id is None else {"session_id": session_id}
    page = await call(client, "list_memories", **args)
    return [m["text"] for m in page["memories"]]


# -- stdio: the default database and the user scope survive restarts ---------------------------


def test_remembered_is_found_at_once_and_after_a_restart(tmp_path: Path) -> None:
    env, log = mcp_env(tmp_path / "home"), tmp_path / "stderr.log"
    note = "The user's sister Ana moved to Porto in March."

    async def test() -> None:
        async with stdio_mcp(env=env, cwd=tmp_path / "one", log=log) as client:
            stored = await call(client, "remember", content=note)
            assert stored["stored"] is True
            memory = stored["memory"]
            found = await call(client, "search_memory", query="where does Ana live?")
            assert [r["id"] for r in found["results"]] == [memory["id"]]
        # the host starts it again, from another working directory
        async with stdio_mcp(env=env, cwd=tmp_path / "two", log=log) as client:
            found = await call(client, "search_memory", query="Ana Porto")
            assert [r["id"] for r in found["results"]] == [memory["id"]]
            assert await texts(client) == [note]

    run(test)
    db = tmp_path / "home" / ".local" / "share" / "engram" / "engram.db"
    assert db.is_file()
    assert not list((tmp_path / "one").iterdir()) and not list((tmp_path / "two").iterdir())
    started = [line for line in log.read_text().splitlines() if "MCP over stdio" in line]
    assert len(started) == 2
    assert all(f"user 'default', database {db}" in line for line in started)


def test_the_user_comes_from_flag_env_or_config_file(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "stderr.log"
    config = tmp_path / "engram.toml"
    config.write_text('mcp_user = "alice"\n', encoding="utf-8")

    async def test() -> None:
        as_alice = mcp_env(home, ENGRAM_MCP_USER="alice")
        async with stdio_mcp(env=as_alice, cwd=tmp_path, log=log) as client:
            await call(client, "remember", content="Alice prefers green tea.")
        async with stdio_mcp(
            "--config", str(config), env=mcp_env(home), cwd=tmp_path, log=log
        ) as c:
            assert await texts(c) == ["Alice prefers green tea."]
        async with stdio_mcp("--user", "bob", env=as_alice, cwd=tmp_path, log=log) as client:
            assert await texts(client) == []  # the flag wins over the environment
            found = await call(client, "search_memory", query="green tea")
            assert found["results"] == []

    run(test)
    users = [line.split("(user ")[1].split(",")[0] for line in log.read_text().splitlines()]
    assert users == ["'alice'", "'alice'", "'bob'"]


def test_user_id_and_forget_only_where_the_flags_allow_them(tmp_path: Path) -> None:
    env, log = mcp_env(tmp_path / "home"), tmp_path / "stderr.log"

    async def test() -> None:
        async with stdio_mcp(env=env, cwd=tmp_path, log=log) as client:
            tools = (await client.list_tools()).tools
            assert {t.name for t in tools} == BASE_TOOLS
            for tool in tools:
                assert "user_id" not in tool.input_schema.get("properties", {}), tool.name
            message = await fails(client, "remember", content="Bob's note.", user_id="bob")
            assert "user_id" in message and "nothing was done" in message
            assert await texts(client) == []  # not stored for the configured user instead
        async with stdio_mcp(
            "--allow-any-user", "--allow-forget", env=env, cwd=tmp_path, log=log
        ) as client:
            tools = (await client.list_tools()).tools
            assert {t.name for t in tools} == {*BASE_TOOLS, "forget_all_memories"}
            assert all("user_id" in t.input_schema["properties"] for t in tools)
            await call(client, "remember", content="Bob's bike is red.", user_id="bob")
            assert await texts(client) == []
            await call(client, "remember", content="Mine is blue.")
            assert "confirm" in await fails(client, "forget_all_memories", confirm=False)
            gone = await call(client, "forget_all_memories", confirm=True, user_id="bob")
            assert gone["forgotten"] >= 1
            found = await call(client, "search_memory", query="bike", user_id="bob")
            assert found["results"] == []
            assert await texts(client) == ["Mine is blue."]

    run(test)


def test_answer_from_memory_and_facts_with_the_servers_llm(tmp_path: Path) -> None:
    """With ENGRAM_LLM_* set (the rule-model stub), remembered notes yield facts: listed with
    their validity, found as of a date, and cited by answer_from_memory."""
    log = tmp_path / "stderr.log"

    async def test(env: dict[str, str]) -> None:
        async with stdio_mcp(env=env, cwd=tmp_path, log=log) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {*BASE_TOOLS, "answer_from_memory"}
            answer_tool = tools["answer_from_memory"]
            assert answer_tool.description and "citations" in answer_tool.description
            await call(client, "remember", content="I live in Paris.", session_id="s1",
                       timestamp="2023-01-10T09:00:00Z")  # fmt: skip
            await call(client, "remember", content="Big news: I moved to Berlin yesterday.",
                       session_id="s2", timestamp="2023-06-01T09:00:00Z")  # fmt: skip
            facts = {m["text"]: m for m in (await call(client, "list_memories", kind="fact"))
                     ["memories"]}  # fmt: skip
            paris, berlin = facts["user lives in Paris"], facts["user lives in Berlin"]
            assert paris["kind"] == berlin["kind"] == "fact"
            assert paris["superseded_by"] == berlin["id"] and paris["valid_to"] is not None
            assert berlin["valid_from"].startswith("2023-05-31") and berlin["valid_to"] is None
            then = await call(client, "list_memories", kind="fact", as_of="2023-03-01")
            assert [m["text"] for m in then["memories"]] == ["user lives in Paris"]
            found = await call(client, "search_memory", query="lives", as_of="2023-03-01")
            assert [f["text"] for f in found["facts"]] == ["user lives in Paris"]
            assert {r["session_id"] for r in found["results"]} == {"s1"}
            assert (await texts(client)) == ["I live in Paris.",
                                             "Big news: I moved to Berlin yesterday."]  # fmt: skip
            answer = await call(client, "answer_from_memory", question="Where does the user live?")
            assert answer["answer"] == "user lives in Berlin" and answer["considered"] >= 2
            assert [c["id"] for c in answer["citations"]] == [berlin["id"]]
            earlier = await call(client, "answer_from_memory", question="Where does the user "
                                 "live?", question_date="2023-03-01")  # fmt: skip
            assert earlier["answer"] == "user lives in Paris"

    with rule_stub() as stub:
        llm = {k: v for k, v in stub.env().items() if k.startswith("ENGRAM_LLM_")}
        run(lambda: test(mcp_env(tmp_path / "home", **llm)))
    assert "SECRET" not in log.read_text()


# -- the tools, on one open (keyless, loopback) HTTP server ------------------------------------


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("open")
    args = ["--db", str(folder / "open.db"), "--embedder", "hash", "mcp", "--http", "--port", "0"]
    server = start_server(args, mcp_env(folder))
    try:
        yield server
    finally:
        server.stop()


def test_tools_are_described_for_a_model(open_server: ServerProcess) -> None:
    async def test() -> None:
        async with http_mcp(open_server.url) as client:
            tools = (await client.list_tools()).tools
            assert {t.name for t in tools} == BASE_TOOLS
            for tool in tools:
                assert tool.description is not None and len(tool.description) > 80, tool.name
                assert tool.output_schema is not None, tool.name  # structured results
                assert "user_id" not in tool.input_schema.get("properties", {})
                for name, prop in tool.input_schema.get("properties", {}).items():
                    assert prop.get("description"), f"{tool.name}.{name}"

    run(test)
    assert open_server.url.endswith("/mcp")


def test_the_same_note_twice_is_stored_once(open_server: ServerProcess) -> None:
    async def test() -> None:
        async with http_mcp(open_server.url) as client:
            first = await call(client, "remember", content="The user is allergic to peanuts.")
            again = await call(client, "remember", content=" The user is  allergic to peanuts.")
            assert (first["stored"], again["stored"]) == (True, False)
            assert again["memory"]["id"] == first["memory"]["id"]
            assert "Already" in again["message"]
            assert await texts(client, MCP_SESSION) == ["The user is allergic to peanuts."]

    run(test)


def test_search_results_carry_ids_sessions_times_and_no_duplicates(
    open_server: ServerProcess,
) -> None:
    note = "Our anniversary dinner is booked at Tasca do Chico."

    async def test() -> None:
        async with http_mcp(open_server.url) as client:
            one = await call(
                client, "remember", content=note, session_id="plans-1",
                timestamp="2024-05-01T19:30:00Z", metadata={"source": "test"},
            )  # fmt: skip
            two = await call(client, "remember", content=note, session_id="plans-2")
            assert one["memory"]["id"] != two["memory"]["id"]  # two sessions, two records
            found = await call(client, "search_memory", query="anniversary dinner Tasca")
            results = found["results"]
            assert len({r["text"] for r in results}) == len(results)  # no text twice
            assert results[0]["text"] == note
            hit = results[0]
            ids = {hit["id"], *hit["duplicate_ids"]}
            assert ids == {one["memory"]["id"], two["memory"]["id"]}
            assert hit["session_id"] in {"plans-1", "plans-2"}
            assert hit["role"] == "user" and hit["score"] > 0
            assert datetime.fromisoformat(hit["timestamp"]).tzinfo is not None
            got = await call(client, "get_memory", record_id=one["memory"]["id"])
            assert got["timestamp"].startswith("2024-05-01T19:30:00")
            assert got["metadata"] == {"source": "test"} and got["session_id"] == "plans-1"

    run(test)


def test_list_pages_with_a_cursor(open_server: ServerProcess) -> None:
    async def test() -> None:
        async with http_mcp(open_server.url) as client:
            for i in range(5):
                await call(client, "remember", content=f"Page note {i}.", session_id="paging")
            seen: list[str] = []
            cursor = None
            for _ in range(5):
                args = {"session_id": "paging", "limit": 2}
                page = await call(client, "list_memories", **args, cursor=cursor)
                seen += [m["text"] for m in page["memories"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == [f"Page note {i}." for i in range(5)]
            assert "cursor" in await fails(client, "list_memories", cursor="garbage")

    run(test)


def test_what_cannot_be_stored_is_an_error_not_a_success(open_server: ServerProcess) -> None:
    async def test() -> None:
        async with http_mcp(open_server.url) as client:
            session = {"session_id": "refused"}
            too_long = await fails(client, "remember", content="x" * 100_001, **session)
            assert "InvalidInputError" in too_long and "100,000" in too_long
            assert "empty" in await fails(client, "remember", content="   ", **session)
            bad_date = await fails(client, "remember", content="hi", timestamp="soon", **session)
            assert "ISO 8601" in bad_date
            assert await texts(client, "refused") == []
            assert "NotFoundError" in await fails(client, "get_memory", record_id="0" * 32)
            assert "NotFoundError" in await fails(client, "delete_memory", record_id="0" * 32)

    run(test)


def test_delete_memory_removes_it_from_search(open_server: ServerProcess) -> None:
    async def test() -> None:
        async with http_mcp(open_server.url) as client:
            note = {"content": "The spare key is under the blue flowerpot.", "session_id": "del"}
            rid = (await call(client, "remember", **note))["memory"]["id"]
            assert (await call(client, "delete_memory", record_id=rid))["id"] == rid
            found = await call(client, "search_memory", query="spare key flowerpot")
            assert rid not in {r["id"] for r in found["results"]}
            assert "NotFoundError" in await fails(client, "get_memory", record_id=rid)

    run(test)


# -- HTTP with API keys: tenants ---------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("keyed")
    db, env = folder / "keyed.db", mcp_env(folder)
    store = KeyStore(f"{db}.keys")  # where the server finds them: next to the database
    keys = {
        "a": store.create("a")[0], "b": store.create("b")[0],
        "a-read": store.create("a", read_only=True)[0],
    }  # fmt: skip
    args = ["--db", str(db), "--embedder", "hash", "mcp", "--http", "--port", "0"]
    server = start_server(args, env)
    try:
        yield server, keys
    finally:
        server.stop()


def test_one_tenant_never_sees_another(keyed: tuple[ServerProcess, dict[str, str]]) -> None:
    server, keys = keyed
    note = "Tenant A's launch date is the 14th."

    async def test() -> None:
        async with http_mcp(server.url, keys["a"]) as a, http_mcp(server.url, keys["b"]) as b:
            rid = (await call(a, "remember", content=note))["memory"]["id"]
            assert (await call(b, "search_memory", query="launch date"))["results"] == []
            assert await texts(b) == []
            assert "NotFoundError" in await fails(b, "get_memory", record_id=rid)
            assert "NotFoundError" in await fails(b, "delete_memory", record_id=rid)
            theirs = await call(b, "remember", content=note)  # the same note, B's own record
            assert theirs["stored"] is True and theirs["memory"]["id"] != rid
            assert (await call(a, "get_memory", record_id=rid))["text"] == note
            assert await texts(a) == [note] and await texts(b) == [note]
            found = await call(a, "search_memory", query="launch date")
            assert [r["id"] for r in found["results"]] == [rid]

    run(test)


def test_a_read_only_key_cannot_remember(keyed: tuple[ServerProcess, dict[str, str]]) -> None:
    server, keys = keyed

    async def test() -> None:
        async with http_mcp(server.url, keys["a-read"]) as reader:
            refused = await fails(reader, "remember", content="Read-only keys cannot write.")
            assert "PermissionDeniedError" in refused
            found = await call(reader, "search_memory", query="read-only keys cannot write")
            assert "Read-only keys cannot write." not in {r["text"] for r in found["results"]}
            await call(reader, "list_memories")  # reading is allowed

    run(test)


def test_the_endpoint_needs_a_valid_key(keyed: tuple[ServerProcess, dict[str, str]]) -> None:
    server, _ = keyed
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer egk_00000000_nope"}, {"Authorization": "x"}):
        answer = httpx.post(server.url, json=request, headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "AuthenticationError"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(httpx.URL(server.url).join("/healthz"), timeout=10).status_code == 200


def test_a_keyless_server_refuses_keys(open_server: ServerProcess) -> None:
    headers = {"Authorization": "Bearer egk_00000000_nope"}
    answer = httpx.post(open_server.url, json={}, headers=headers, timeout=10)
    assert answer.status_code == 401 and "no API keys" in answer.json()["error"]["message"]


# -- in-process: the pure parts ----------------------------------------------------------------


def test_user_data_db_follows_xdg(tmp_path: Path) -> None:
    home = Path.home()
    assert user_data_db({}) == home / ".local" / "share" / "engram" / "engram.db"
    assert user_data_db({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "engram" / "engram.db"
    relative = {"XDG_DATA_HOME": "data"}  # the XDG spec: a relative path is ignored
    assert user_data_db(relative) == home / ".local" / "share" / "engram" / "engram.db"


def test_load_mcp_settings_defaults_to_the_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = load_mcp_settings()
    assert settings.db == str(tmp_path / "xdg" / "engram" / "engram.db")
    assert (tmp_path / "xdg" / "engram").is_dir()
    assert settings.keys_path == settings.db + ".keys"
    assert load_mcp_settings(db="here.db").db == "here.db"
    monkeypatch.setenv("ENGRAM_DB", "env.db")
    assert load_mcp_settings().db == "env.db"


def test_note_ids_ignore_spacing_but_not_words() -> None:
    assert note_id("user", "I like tea.") == note_id("User", "  I like\ntea. ")
    assert note_id("user", "I like tea.") != note_id("user", "I like coffee.")
    assert note_id("user", "I like tea.") != note_id("assistant", "I like tea.")


def _hit(rid: str, text: str, score: float) -> Hit:
    stamp = datetime.fromisoformat("2024-05-01T00:00:00+00:00")
    record = MemoryRecord(
        id=rid, kind=RecordKind.TURN, text=text, user_id="u", session_id="s", agent_id=None,
        role="user", name=None, seq=0, timestamp=stamp, created_at=stamp,
    )  # fmt: skip
    return Hit(record, score)


def test_dedupe_keeps_the_best_of_each_text() -> None:
    hits = [
        _hit("1", "Tea.", 3),
        _hit("2", "Coffee.", 2),
        _hit("3", " tea. ", 1),
        _hit("4", "Milk", 0),
    ]
    found = dedupe(hits, limit=2)
    assert [(f.id, f.duplicate_ids) for f in found] == [("1", ["3"]), ("2", [])]
