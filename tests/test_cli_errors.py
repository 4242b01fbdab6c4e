"""The command line's error contract (issue #8): bad input of any kind is one line on stderr,
``engram: error: ...``, with exit code 1 or 2 and never a traceback; an unexpected exception
is one line with a hint, and its traceback only with ``ENGRAM_DEBUG=1``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import engram
from cli_result import Result
from engram import Memory
from engram.cli.main import main, one_line
from engram.write.messages import MAX_METADATA_BYTES

SRC = Path(engram.__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("ENGRAM_DEBUG", raising=False)
    db = tmp_path / "cli.db"

    def invoke(*args: str, stdin: io.TextIOBase | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", stdin)
        code = main(["--db", str(db), "--embedder", "hash", *args])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    assert invoke("add", "--user", "u", "--content", "I live in Lisbon.").code == 0
    return invoke


def assert_one_line(result: Result, code: int, *fragments: str) -> None:
    assert (result.code, result.out) == (code, ""), result.err
    [line] = result.err.splitlines()
    assert line.startswith("engram: error: ") and "Traceback" not in line
    assert line.isprintable(), line
    for fragment in fragments:
        assert fragment in line


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("add", "--user", "\udcff", "--content", "hi"), "user_id contains a lone surrogate"),
        (("add", "--user", "u", "--session", "s\x1fx", "--content", "hi"), "control character"),
        (("add", "--user", "u", "--agent", "", "--content", "hi"), "agent_id"),
        (("add", "--user", "u", "--session", "", "--content", "hi"), "session_id"),
        (("add", "--user", "u", "--content", "\udcff"), "not valid Unicode"),
        (("add", "--user", "u", "--role", "\x1b[31m", "--content", "hi"), "\\x1b"),
        (("add", "--user", "u", "--name", "\udcff", "--content", "hi"), "name"),
        (("add", "--user", "u", "--date", "0001-01-01T00:00:00+14:00", "--content", "hi"), "UTC"),
        (("get", "\udcff", "--user", "u"), "record id contains a lone surrogate"),
        (("get", "a" * 300, "--user", "u"), "longer than 256"),
        (("delete", "x\x00y", "--user", "u"), "control character"),
        (("history", "", "--user", "u"), "record id"),
        (("list", "--user", "u", "--offset", str(2**70)), "offset"),
        (("list", "--user", "u", "--session", "\udcff"), "session_id"),
        (("search", "lisbon\udcff", "--user", "u"), "query"),
        (("search", "lisbon", "--user", "u", "--date", "9999-12-31T23:00:00-14:00"), "UTC"),
        (("stats", "--user", "\x85"), "user_id"),
        (("forget", "--user", "u\udcff", "--yes"), "user_id"),
    ],
)
def test_bad_input_is_one_line(run: Any, args: tuple[str, ...], fragment: str) -> None:
    assert_one_line(run(*args), 1, fragment)


def test_a_lone_surrogate_in_a_usage_error_is_escaped(run: Any) -> None:
    assert_one_line(run("\udcff"), 2, "No such command", "\\udcff")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[{"role": "user", "content": "hi", "id": ' + "9" * 5000 + "}]", "4,300 digits"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('[{"role": "user", "content": "hi", "metadata": {"a": "\\udcff"}}]', "Unicode"),
        (json.dumps([{"role": "user", "content": "hi", "metadata": {"a": "x" * 70_000}}]), "limit"),
    ],
    ids=["5000-digit number", "deep JSON", "surrogate in metadata", "big metadata"],
)
def test_a_bad_messages_file_is_one_line(
    run: Any, tmp_path: Path, text: str, fragment: str
) -> None:
    assert MAX_METADATA_BYTES < 70_000
    assert_one_line(run("add", "--user", "u", write(tmp_path / "m.json", text)), 1, fragment)


def test_bad_conversations_files_are_one_line(run: Any, tmp_path: Path) -> None:
    deep = write(tmp_path / "deep.jsonl", "[" * 100_000 + "]" * 100_000)
    assert_one_line(run("import", deep), 1, "deep.jsonl line 1", "nested too deeply")
    user = json.dumps({"user_id": "u\x1fs", "session_id": "x", "messages": [{"role": "user",
                       "content": "hi"}]})  # fmt: skip
    assert_one_line(run("import", write(tmp_path / "sep.jsonl", user)), 1, "control character")


def test_standard_input_that_is_not_utf8_is_one_line(run: Any) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b'[{"role": "user", "content": "\xff"}]'), "utf-8")
    assert_one_line(run("add", "--user", "u", "-", stdin=stdin), 1, "<stdin>", "UTF-8")


def test_jsonl_lines_end_only_at_newlines(run: Any, tmp_path: Path) -> None:
    text = "one\u2028two\x1ethree\x85four"
    line = json.dumps(
        {"user_id": "u", "session_id": "s", "messages": [{"role": "user", "content": text}]},
        ensure_ascii=False,
    )
    assert run("import", write(tmp_path / "c.jsonl", line + "\n")).code == 0
    assert [r["text"] for r in run("list", "--user", "u", "--session", "s").json] == [text]


def test_a_database_name_that_is_too_long_is_one_line(run: Any) -> None:
    assert_one_line(run("--db", "a" * 5000, "list", "--user", "u"), 1, "cannot open")


def test_an_internal_error_is_one_line_with_a_hint(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Memory, **kwargs: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(Memory, "list", broken)
    result = run("list", "--user", "u")
    assert_one_line(result, 1, "internal error: RuntimeError: boom second line", "ENGRAM_DEBUG=1")
    monkeypatch.setenv("ENGRAM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        run("list", "--user", "u")


def test_one_line_escapes_what_a_terminal_would_run() -> None:
    assert one_line("a\udcff  b\x1b[2J\n\tc\x7f") == "a\\udcff b\\x1b[2J c\\x7f"


def test_a_non_utf8_argument_byte_is_one_line(tmp_path: Path) -> None:
    """The reproducer: ``engram add --user $'\\xff'`` (a lone surrogate under surrogateescape)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("ENGRAM_DEBUG", None)
    db = str(tmp_path / "x.db").encode()
    argv = [sys.executable.encode(), b"-m", b"engram.cli.main", b"--db", db, b"--embedder",
            b"hash", b"add", b"--user", b"\xff", b"--content", b"hi"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        "engram: error: user_id contains a lone surrogate ('\\udcff' at position 0): '\\udcff'"
    ]
