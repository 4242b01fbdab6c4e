"""The ``engram`` command line, run in-process through ``main(argv)`` on real SQLite files, with
the hashing fake embedder (``--embedder hash``) except in the one slow test."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cli_result import Result
from engram import ConfigurationError, HashEmbedder, OpenAIEmbedder, SentenceTransformerEmbedder
from engram.cli.main import cli, main
from engram.config import Settings, make_embedder

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample_conversation.jsonl"
HIT_KEYS = {
    "id", "message_id", "session_id", "role", "name", "text", "timestamp", "score", "found_by"
}  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def run(db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``run("list", "--user", "u")`` runs ``engram --db DB --embedder hash list --user u``."""

    def invoke(*args: str, stdin: str | None = None, base: bool = True) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        argv = ["--db", str(db), "--embedder", "hash", *args] if base else list(args)
        code = main(argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


@pytest.fixture
def sample(run: Any) -> Any:
    result = run("import", str(SAMPLE))
    assert result.code == 0, result.err
    return run


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("engram: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def conversation(session: str, *texts: str, user: str | None = "u1") -> dict[str, Any]:
    roles = ("user", "assistant")
    conv: dict[str, Any] = {
        "session_id": session,
        "session_date": "2024-05-01T10:00:00Z",
        "messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(texts)],
    }
    if user is not None:
        conv["user_id"] = user
    return conv


# -- help and global options ----------------------------------------------------------------------


def test_help_lists_every_command(run: Any) -> None:
    result = run("--help", base=False)
    assert result.code == 0
    for name in cli.commands:
        assert name in result.out


def test_version(run: Any) -> None:
    result = run("--version", base=False)
    assert result.code == 0
    assert result.out.startswith("engram, version ")


def test_no_command_is_a_usage_error(run: Any) -> None:
    assert_one_line_error(run(base=False), 2, "Missing command")


def test_env_settings_and_options_after_the_command(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_db = tmp_path / "from-env.db"
    monkeypatch.setenv("ENGRAM_DB", str(env_db))
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    assert run("add", "--user", "u1", "--content", "hello there", base=False).code == 0
    assert env_db.exists()
    other = tmp_path / "other.db"
    result = run("add", "--user", "u1", "--content", "hi", "--db", str(other), base=False)
    assert result.code == 0
    result = run("stats", "--pretty", "--db", str(other), base=False)
    assert result.code == 0
    assert result.out.splitlines()[0].split() == ["turn", "records", "1"]


def test_embed_cache_option_and_env(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "vectors.sqlite"
    result = run(
        "add", "--user", "u1", "--content", "I moved to Lisbon.", "--embed-cache", str(cache)
    )
    assert result.code == 0, result.err
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT count(*) FROM vectors").fetchone()[0] > 0
    monkeypatch.setenv("ENGRAM_EMBED_CACHE", str(tmp_path / "env.sqlite"))
    assert run("add", "--user", "u1", "--content", "My cat is Miso.").code == 0
    assert (tmp_path / "env.sqlite").exists()
    bad = run("add", "--user", "u1", "--content", "x", "--embed-cache", str(tmp_path))
    assert_one_line_error(bad, 1, "cannot open embedding cache")


def test_read_commands_need_an_existing_database(run: Any, db: Path) -> None:
    result = run("list", "--user", "u1")
    assert_one_line_error(result, 1, "no database at")
    assert not db.exists()


def test_read_commands_do_not_load_a_model(sample: Any, db: Path) -> None:
    code = (
        "import sys; from engram.cli.main import main; "
        f"rc = main(['--db', {str(db)!r}, '--embedder', 'bundled', 'list', '--user', 'demo']); "
        "loaded = [m for m in ('torch', 'sentence_transformers') if m in sys.modules]; "
        "print(rc, loaded, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "0 []"


# -- add ------------------------------------------------------------------------------------------


def test_add_one_message(run: Any) -> None:
    result = run(
        "add", "--user", "u1", "--session", "s1", "--agent", "bot", "--date", "2024-05-01",
        "--role", "assistant", "--name", "Ada", "--content", "Your table is booked for 8pm.",
    )  # fmt: skip
    assert result.code == 0, result.err
    [record] = result.json
    assert record["kind"] == "turn"
    assert (record["user_id"], record["session_id"], record["agent_id"]) == ("u1", "s1", "bot")
    assert (record["role"], record["name"]) == ("assistant", "Ada")
    assert record["text"] == "Your table is booked for 8pm."
    assert datetime.fromisoformat(record["timestamp"]) == datetime.fromisoformat(
        "2024-05-01T00:00:00+00:00"
    )
    datetime.fromisoformat(record["created_at"])


def test_add_from_file_and_stdin_is_idempotent(run: Any, tmp_path: Path) -> None:
    messages = [
        {"role": "user", "content": "I adopted a cat named Miso.", "id": "m1"},
        {"role": "assistant", "content": "Congratulations on Miso!", "id": "m2"},
    ]
    path = write_json(tmp_path / "messages.json", messages)
    first = run("add", "--user", "u1", "--file", str(path))
    assert first.code == 0, first.err
    assert [r["message_id"] for r in first.json] == ["m1", "m2"]
    again = run("add", "--user", "u1", "-", stdin=json.dumps(messages))
    assert again.code == 0, again.err
    assert [r["id"] for r in again.json] == [r["id"] for r in first.json]
    assert run("stats", "--user", "u1").json["records"]["turn"] == 2


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("--content", "   "), 1, "is empty"),
        ((), 2, "exactly one of"),
        (("--content", "x", "--file", "m.json"), 2, "exactly one of"),
        (("--date", "last tuesday", "--content", "x"), 2, "not an ISO 8601"),
        (("--file", "missing.json"), 1, "missing.json: no such file"),
        (("--session", " ", "--content", "x"), 1, "session_id must be a non-empty string"),
    ],
)
def test_add_rejects_bad_input(run: Any, args: tuple[str, ...], code: int, fragment: str) -> None:
    assert_one_line_error(run("add", "--user", "u1", *args), code, fragment)


def test_add_rejects_a_file_that_is_not_a_list(run: Any, tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", {"role": "user", "content": "hi"})
    assert_one_line_error(run("add", "--user", "u1", str(path)), 1, "expected a JSON list")


# -- import ---------------------------------------------------------------------------------------


def test_import_jsonl_sample(sample: Any) -> None:
    stats = sample("stats", "--user", "demo").json
    assert stats["records"]["turn"] == 28
    assert stats["sessions"] == 3
    again = sample("import", "--quiet", str(SAMPLE))
    assert again.json == {"files": 1, "conversations": 3, "messages": 28, "turns_added": 0}


def test_import_progress_bar_on_a_terminal(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = run("import", str(SAMPLE))
    assert shown.code == 0 and "sample_conversation.jsonl" in shown.err and "conv" in shown.err
    quiet = run("import", "--quiet", str(SAMPLE))
    assert quiet.code == 0 and quiet.err == ""


def test_import_json_list_with_user_override(run: Any, tmp_path: Path) -> None:
    convs = [conversation("a", "I live in Oslo.", "Nice!", user=None), conversation("b", "Hi")]
    path = write_json(tmp_path / "convs.json", convs)
    result = run("import", str(path), "--user", "u9")
    assert result.json == {"files": 1, "conversations": 2, "messages": 3, "turns_added": 3}
    assert run("stats", "--user", "u9").json["records"]["turn"] == 3
    assert run("stats", "--user", "u1").json["records"] == {}


def test_import_single_object_and_stdin(run: Any, tmp_path: Path) -> None:
    path = write_json(tmp_path / "one.json", conversation("a", "hello"))
    assert run("import", str(path)).json["conversations"] == 1
    lines = "\n".join(json.dumps(conversation(s, f"text {s}")) for s in ("b", "c"))
    result = run("import", "-", stdin=lines + "\n\n")
    assert result.json["conversations"] == 2


def test_bad_conversation_stops_import_and_keeps_earlier(run: Any, tmp_path: Path) -> None:
    lines = [conversation("a", "first"), conversation("b", "ok", "  "), conversation("c", "x")]
    path = tmp_path / "convs.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in lines), encoding="utf-8")
    result = run("import", str(path))
    assert_one_line_error(
        result,
        1,
        "convs.jsonl line 2",
        "message 1 content",
        "1 conversation (1 message) before it were kept",
    )
    listed = run("list", "--user", "u1").json
    assert [r["text"] for r in listed] == ["first"]


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.json", '[{"user_id": "u1",', "bad.json: invalid JSON"),
        (
            "bad.jsonl",
            f"{json.dumps(conversation('a', 'x'))}\nnot json",
            "bad.jsonl line 2: invalid",
        ),
        ("nouser.jsonl", json.dumps(conversation("a", "x", user=None)), "missing 'user_id'"),
        ("extra.json", json.dumps([{**conversation("a", "x"), "foo": 1}]), "extra.json[0]"),
        ("nosession.json", '{"user_id": "u1", "messages": []}', "missing 'session_id'"),
    ],
)
def test_import_rejects_bad_files(
    run: Any, tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert_one_line_error(run("import", str(path)), 1, fragment)


def test_import_missing_file_writes_nothing(run: Any, db: Path, tmp_path: Path) -> None:
    good = write_json(tmp_path / "good.json", conversation("a", "x"))
    result = run("import", str(good), str(tmp_path / "nope.jsonl"))
    assert_one_line_error(result, 1, "nope.jsonl: no such file")
    assert not db.exists()


# -- search ---------------------------------------------------------------------------------------


def test_search_json_shape(sample: Any) -> None:
    hits = sample("search", "where do we live, Denver?", "--user", "demo", "--limit", "3").json
    assert len(hits) == 3
    assert all(set(hit) == HIT_KEYS for hit in hits)
    top = hits[0]
    assert top["message_id"] == "s3-3"
    assert top["session_id"] == "s3"
    assert {"lexical", "semantic"} <= set(top["found_by"]) <= {"lexical", "semantic", "sentence"}
    assert all(set(v) == {"rank", "score"} for v in top["found_by"].values())
    assert datetime.fromisoformat(top["timestamp"]).tzinfo is not None
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_search_options(sample: Any) -> None:
    lexical = sample("search", "greyhound", "--user", "demo", "--preset", "lexical").json
    assert lexical and all(set(h["found_by"]) == {"lexical"} for h in lexical)
    in_s1 = sample("search", "greyhound vet", "--user", "demo", "--session", "s1").json
    assert in_s1 and {h["session_id"] for h in in_s1} == {"s1"}
    dated = sample("search", "peanuts", "--user", "demo", "--date", "2024-05-01T12:00:00Z")
    assert dated.code == 0, dated.err
    assert sample("search", "peanuts", "--user", "demo", "--agent", "nobody").json == []


def test_search_sessions(sample: Any) -> None:
    sessions = sample("search", "greyhound Pepper", "--user", "demo", "--sessions").json
    assert set(sessions[0]) == {"session_id", "score", "hits"}
    assert sessions[0]["session_id"] == "s2"
    assert all(set(h) == HIT_KEYS for h in sessions[0]["hits"])
    result = sample("search", "x", "--user", "demo", "--sessions", "--session", "s1")
    assert_one_line_error(result, 2, "--sessions")


def test_search_usage_errors(sample: Any) -> None:
    assert_one_line_error(sample("search", "x"), 2, "Missing option '--user'")
    assert_one_line_error(sample("search", "x", "--user", "demo", "--preset", "magic"), 2)
    assert_one_line_error(sample("search", "x", "--user", "demo", "--limit", "0"), 2)
    assert_one_line_error(sample("search", " ", "--user", "demo"), 1, "query")


# -- records --------------------------------------------------------------------------------------


def test_list_kinds_and_paging(sample: Any) -> None:
    turns = sample("list", "--user", "demo").json
    assert len(turns) == 28 and {r["kind"] for r in turns} == {"turn"}
    rounds = sample("list", "--user", "demo", "--kind", "round").json
    assert len(rounds) == 14 and all(len(r["provenance"]) == 2 for r in rounds)
    both = sample("list", "--user", "demo", "--kind", "turn", "--kind", "round", "--limit", "1000")
    assert len(both.json) == 42
    sentences = sample("list", "--user", "demo", "--kind", "sentence", "--limit", "1000").json
    assert len(sentences) == 59 and all(len(r["provenance"]) == 1 for r in sentences)
    windows = sample("list", "--user", "demo", "--kind", "window", "--session", "s1").json
    assert [len(w["provenance"]) for w in windows] == [2, 3, 3, 3, 3, 3, 3]
    page = sample("list", "--user", "demo", "--limit", "5", "--offset", "5").json
    assert [r["id"] for r in page] == [r["id"] for r in turns[5:10]]
    s2 = sample("list", "--user", "demo", "--session", "s2").json
    assert [r["message_id"] for r in s2] == [f"s2-{i}" for i in range(1, 11)]


def test_get_delete_history(sample: Any) -> None:
    first = sample("list", "--user", "demo", "--limit", "1").json[0]
    got = sample("get", first["id"], "--user", "demo").json
    assert got == first
    deleted = sample("delete", first["id"], "--user", "demo").json["deleted"]
    # the turn, its round, 2 windows and its 3 sentences ("Hi!" is too short to be one)
    assert deleted[0] == first["id"] and len(deleted) == 7
    assert_one_line_error(sample("get", first["id"], "--user", "demo"), 1, "no record")
    events = sample("history", first["id"], "--user", "demo").json
    assert [e["event"] for e in events] == ["ADD", "DELETE"]
    assert events[1]["old_text"] is None  # a hard delete erases the text from the history too
    assert set(events[0]) == {"id", "record_id", "event", "old_text", "new_text", "at", "reason"}


@pytest.mark.parametrize("command", ["get", "delete", "history"])
def test_unknown_record_id(sample: Any, command: str) -> None:
    assert_one_line_error(sample(command, "no-such-id", "--user", "demo"), 1, "no-such-id")


def test_forget_needs_yes(sample: Any) -> None:
    assert_one_line_error(sample("forget", "--user", "demo"), 2, "--yes")
    assert sample("stats", "--user", "demo").json["records"]["turn"] == 28
    one = sample("forget", "--user", "demo", "--session", "s1", "--yes").json
    # 8 turns, 4 rounds, 7 windows, 17 sentence keys of the 7 turns with several sentences
    assert one == {"user_id": "demo", "session_id": "s1", "deleted": 36}
    rest = sample("forget", "--user", "demo", "--yes").json
    assert rest["deleted"] == 90  # 20 turns, 10 rounds, 18 windows, 42 sentence keys
    assert sample("stats", "--user", "demo").json["records"] == {}


def test_stats(sample: Any, tmp_path: Path) -> None:
    other = write_json(tmp_path / "o.json", conversation("x", "hello", user="u2"))
    sample("import", str(other))
    everyone = sample("stats").json
    assert everyone["users"] == 2 and everyone["records"]["turn"] == 29
    assert (everyone["embedder"], everyone["dim"]) == ("hash-256", 256)
    assert sample("stats", "--user", "u2").json["records"] == {"turn": 1}


def test_users_cannot_see_each_other(sample: Any) -> None:
    record = sample("list", "--user", "demo", "--limit", "1").json[0]
    assert sample("add", "--user", "eve", "--content", "hello").code == 0
    assert {h["text"] for h in sample("search", "Denver greyhound", "--user", "eve").json} <= {
        "hello"
    }
    assert all(r["user_id"] == "eve" for r in sample("list", "--user", "eve").json)
    for command in ("get", "delete", "history"):
        assert_one_line_error(sample(command, record["id"], "--user", "eve"), 1, "no record")
    assert sample("forget", "--user", "eve", "--yes").json["deleted"] == 1
    assert sample("get", record["id"], "--user", "demo").json == record
    assert sample("stats", "--user", "demo").json["records"]["turn"] == 28


# -- output ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("search", "greyhound", "--user", "demo"), "found by"),
        (("search", "greyhound", "--user", "demo", "--sessions"), "best turn"),
        (("search", "zzzqqq", "--user", "demo", "--preset", "lexical"), "(no results)"),
        (("list", "--user", "demo", "--limit", "3"), "session"),
        (("stats",), "turn records"),
        (("import", str(SAMPLE)), "turns_added"),
    ],
)
def test_pretty_is_a_table(sample: Any, args: tuple[str, ...], expected: str) -> None:
    result = sample("--pretty", *args)
    assert result.code == 0, result.err
    assert expected in result.out
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.out)


def test_pretty_get_and_history(sample: Any) -> None:
    record = sample("list", "--user", "demo", "--limit", "1").json[0]
    shown = sample("get", record["id"], "--user", "demo", "--pretty").out
    assert record["id"] in shown and record["text"] in shown
    assert "ADD" in sample("history", record["id"], "--user", "demo", "--pretty").out


# -- configuration --------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    assert Settings.from_env({}) == Settings("engram.db", "bundled", None, None)
    env = {
        "ENGRAM_DB": "/tmp/x.db", "ENGRAM_EMBEDDER": "hash:32", "ENGRAM_OPENAI_BASE_URL": "",
        "ENGRAM_OPENAI_API_KEY": "sk-secret",
    }  # fmt: skip
    settings = Settings.from_env(env)
    assert (settings.db, settings.embedder, settings.openai_base_url) == (
        "/tmp/x.db",
        "hash:32",
        None,
    )
    assert "sk-secret" not in repr(settings)
    assert settings.with_(db="y.db", embedder=None).db == "y.db"


def test_make_embedder_specs() -> None:
    settings = Settings(openai_base_url="http://localhost:11434/v1")
    assert isinstance(make_embedder("bundled", settings), SentenceTransformerEmbedder)
    assert make_embedder("hash", settings).dim == 256
    hashed = make_embedder("hash:32", settings)
    assert isinstance(hashed, HashEmbedder) and hashed.dim == 32
    assert make_embedder("st:/models/e5", settings).name == "/models/e5"
    remote = make_embedder("openai:nomic-embed-text:latest", settings)
    assert isinstance(remote, OpenAIEmbedder) and remote.name == "openai:nomic-embed-text:latest"


@pytest.mark.parametrize("spec", ["nope", "hash:x", "hash:0", "st:", "openai:", "bundled:x", ""])
def test_make_embedder_rejects_unknown_specs(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        make_embedder(spec, Settings())


def test_unknown_embedder_is_an_error(run: Any) -> None:
    result = run("--embedder", "word2vec", "add", "--user", "u1", "--content", "x")
    assert_one_line_error(result, 1, "unknown embedder 'word2vec'")


# -- the real model -------------------------------------------------------------------------------


@pytest.mark.slow
def test_bundled_model_finds_where_the_user_lives(tmp_path: Path, run: Any) -> None:
    db = str(tmp_path / "demo.db")
    assert run("--db", db, "import", str(SAMPLE), base=False).code == 0
    result = run(
        "--db", db, "search", "where does the user live now?", "--user", "demo", base=False
    )
    assert result.code == 0, result.err
    hits = result.json
    assert hits[0]["message_id"] == "s3-3"
    assert hits[0]["found_by"]["semantic"]["rank"] == 1
