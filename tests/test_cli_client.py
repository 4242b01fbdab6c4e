"""``engram --server URL ...``: the record, search and write commands against a real ``engram
serve`` process print what the same commands print with ``--db`` on an equal local file; API keys
from ``--api-key`` and ``ENGRAM_API_KEY``; the commands that refuse ``--server``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cli_result import Result
from engram.cli.main import main
from servers import ServerProcess, engram_env, rest_server, run_engram

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample_conversation.jsonl"
# when each copy recorded something, and its file size (which depends on when its log was
# checkpointed): not comparable
RECORDING_CLOCKS = {"created_at", "at", "size_bytes"}
MESSAGES = [
    {"role": "user", "content": "I adopted a beagle named Rex. He is two years old.", "id": "m1"},
    {"role": "assistant", "content": "Congratulations! Beagles are lovely dogs.",
     "metadata": {"mood": "happy", "tags": ["dog"]}},
    {"role": "user", "content": "Rex chewed my shoes.", "timestamp": "2024-05-02T08:00:00+02:00"},
]  # fmt: skip


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerProcess]:
    with rest_server(tmp_path_factory.mktemp("served") / "served.db", env=server_env) as s:
        yield s


@pytest.fixture
def local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """``local(args...)``: ``engram --db LOCAL --embedder hash ARGS`` in this process."""

    def invoke(*args: str, base: bool = True) -> Result:
        argv = ["--db", str(tmp_path / "local.db"), "--embedder", "hash", *args] if base else args
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


def remote(server: ServerProcess, *args: str, **env: str) -> Result:
    """``engram --server URL ARGS`` as a child process."""
    done = run_engram("--server", server.url, *args, env=engram_env(**env))
    return Result(done.returncode, done.stdout, done.stderr)


def comparable(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: comparable(v) for k, v in doc.items() if k not in RECORDING_CLOCKS}
    if isinstance(doc, list):
        return [comparable(v) for v in doc]
    return doc


def same(server: ServerProcess, local: Any, *commands: tuple[str, ...]) -> list[Result]:
    """Run each command locally (in turn) and against the server (all at once: they must not
    depend on each other); both print the same, but for when each copy recorded things, and
    exit alike. Returns the local results."""
    with ThreadPoolExecutor(len(commands)) as pool:
        served = list(pool.map(lambda command: remote(server, *command), commands))
    wanted = [local(*command) for command in commands]
    for command, want, got in zip(commands, wanted, served, strict=True):
        assert (got.code, got.err) == (want.code, want.err), command
        if want.code == 0:
            assert comparable(got.json) == comparable(want.json), command
    return wanted


def test_commands_print_the_same_against_a_server(
    server: ServerProcess, local: Any, tmp_path: Path
) -> None:
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps(MESSAGES), encoding="utf-8")
    [added] = same(
        server, local,
        ("add", "--user", "cli", "--session", "s1", "--date", "2024-05-01", str(messages)),
    )  # fmt: skip
    same(
        server, local,  # the order of these writes shows only in history ids, not read below
        ("add", "--user", "cli", "--session", "s2", "--date", "2024-05-03T10:00:00Z",
         "--content", "My sister lives in Lisbon.", "--name", "Ana"),
        ("import", str(SAMPLE)),
    )  # fmt: skip
    first = added.json[0]["id"]
    same(
        server, local,
        ("search", "beagle named Rex", "--user", "cli", "--date", "2024-06-01", "--limit", "3"),
        ("search", "Rex", "--user", "cli", "--sessions", "--preset", "lexical"),
        ("list", "--user", "cli"),
        ("list", "--user", "cli", "--kind", "round", "--kind", "turn", "--limit", "2",
         "--offset", "1"),
        ("get", first, "--user", "cli"),
        ("history", first, "--user", "cli"),
        ("get", "0123abcd", "--user", "cli"),  # errors: the same line, the same exit code
        ("list", "--user", "cli\x01"),
        ("stats", "--user", "cli"),
    )  # fmt: skip
    same(
        server, local,
        ("delete", first, "--user", "cli"), ("forget", "--user", "cli", "--session", "s2", "--yes"),
    )  # fmt: skip
    same(server, local, ("stats",))


def test_the_environment_names_the_server_and_options_win(
    server: ServerProcess, local: Any, tmp_path: Path
) -> None:
    hello = ("add", "--user", "env", "--date", "2024-01-01", "--content", "hello from env")
    assert local(*hello).code == 0
    done = run_engram(*hello, env=engram_env(ENGRAM_SERVER=server.url))
    assert done.returncode == 0, done.stderr
    listed = run_engram("list", "--user", "env", env=engram_env(ENGRAM_SERVER=server.url))
    assert [r["text"] for r in json.loads(listed.stdout)] == ["hello from env"]
    # --db (or --embedder) given as an option wins over ENGRAM_SERVER, as options do
    other = tmp_path / "other.db"
    mine = run_engram("--db", str(other), "--embedder", "hash", "list", "--user", "env",
                      env=engram_env(ENGRAM_SERVER="http://127.0.0.1:1"))  # fmt: skip
    assert mine.returncode == 1 and "no database at" in mine.stderr


def create_key(db: Path, *extra: str) -> str:
    done = run_engram("--db", str(db), "keys", "create", "--tenant", "acme", *extra)
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


def test_api_keys_from_the_option_and_the_environment(
    tmp_path: Path, local: Any, server_env: dict[str, str]
) -> None:
    db = tmp_path / "keyed.db"
    with ThreadPoolExecutor(2) as pool:
        writer, reader = pool.map(lambda a: create_key(db, *a), [(), ("--read-only",)])
    hello = ("add", "--user", "alice", "--content", "hello", "--date", "2024-01-01")
    with rest_server(db, env=server_env) as keyed:
        url = keyed.url
        added = local("--server", url, "--api-key", writer, *hello, base=False)
        assert added.code == 0, added.err
        assert added.json[0]["user_id"] == "alice"  # the tenant's own id, not acme/alice
        listed = run_engram("--server", url, "list", "--user", "alice",
                            env=engram_env(ENGRAM_API_KEY=reader))  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == added.json
        for key, words in ((reader, "read-only"), (None, "needs an API key"), ("nope", "key")):
            flags = ("--api-key", key) if key else ()
            failed = local("--server", url, *flags, *hello, base=False)
            assert failed.code == 1 and failed.out == "", failed.err
            assert words in failed.err and len(failed.err.splitlines()) == 1
        everything = local("--server", url, "--api-key", writer, "stats", base=False)
        assert everything.code == 1 and "user_id" in everything.err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("serve", "--port", "0"), "'engram serve' works on local files: --server"),
        (("keys", "list"), "'engram keys' works on local files: --server"),
        (("bench", "locomo", "--data", "x.json", "--out", "run"), "'engram bench locomo'"),
        (("--db", "x.db", "list", "--user", "u"), "--server cannot be combined with --db"),
        (("list", "--user", "u", "--embedder", "hash"), "cannot be combined with --embedder"),
    ],
)  # fmt: skip
def test_local_commands_and_options_refuse_a_server(
    local: Any, args: tuple[str, ...], words: str
) -> None:
    refused = local("--server", "http://127.0.0.1:1", *args, base=False)
    assert refused.code == 2 and refused.out == ""
    assert words in refused.err and len(refused.err.splitlines()) == 1


def test_an_api_key_needs_a_server(local: Any) -> None:
    refused = local("--api-key", "k", "list", "--user", "u")
    assert refused.code == 2 and "--api-key goes with --server" in refused.err


def test_an_unreachable_server_is_one_line(local: Any) -> None:
    failed = local("--server", "http://127.0.0.1:1", "list", "--user", "u", base=False)
    assert failed.code == 1 and failed.out == ""
    assert failed.err.startswith("engram: error: cannot reach the server at http://127.0.0.1:1")
    bad = local("--server", "localhost:8765", "list", "--user", "u", base=False)
    assert bad.code == 1 and "http://HOST" in bad.err
