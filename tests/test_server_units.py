"""The server's pure parts and its key file, without a server process: settings precedence,
tenant namespacing, key checks, cursors. (The end-to-end tests start real servers.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engram import (
    AuthenticationError,
    ConfigurationError,
    InvalidInputError,
    MemoryRecord,
    NotFoundError,
    PermissionDeniedError,
    RecordKind,
    ScopeError,
)
from engram.server import KeyStore, Principal, ServerSettings
from engram.server.schemas import decode_cursor, encode_cursor
from engram.server.settings import is_loopback

DOCS = Path(__file__).resolve().parents[1] / "docs" / "server.md"


def test_every_setting_is_in_the_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = text[text.index("## Settings") :]
    for name in ServerSettings.model_fields:
        assert re.search(rf"^\| `{name}` \| `ENGRAM_{name.upper()}` \|", table, re.M), name


def test_precedence_flag_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "engram.toml"
    config.write_text('port = 9001\nhost = "::1"\nrequest_timeout = 5.5\n', encoding="utf-8")
    for name in ("ENGRAM_PORT", "ENGRAM_HOST", "ENGRAM_CONFIG", "ENGRAM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert ServerSettings.load().port == 8765  # default
    assert ServerSettings.load(str(config)).port == 9001  # file
    monkeypatch.setenv("ENGRAM_PORT", "9002")
    monkeypatch.setenv("ENGRAM_THREADS", "")  # empty: unset
    loaded = ServerSettings.load(str(config))
    assert (loaded.port, loaded.host, loaded.request_timeout, loaded.threads) == (
        9002, "::1", 5.5, 32,
    )  # fmt: skip
    assert ServerSettings.load(str(config), port=9003, host=None).port == 9003  # flag; None: unset
    monkeypatch.setenv("ENGRAM_CONFIG", str(config))
    assert ServerSettings.load().host == "::1"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("port = 70000\n", "port"),
        ("nonsense = 1\n", "nonsense"),
        ("port = [\n", "cannot read"),
        ('mcp_user = "a\\u0000b"\n', "mcp_user"),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path: Path, content: str, words: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=words):
        ServerSettings.load(str(config))
    with pytest.raises(ConfigurationError, match="does not exist"):
        ServerSettings.load(str(tmp_path / "missing.toml"))


def test_keys_file_defaults_next_to_the_database() -> None:
    assert ServerSettings(db="/x/m.db").keys_path == "/x/m.db.keys"
    assert ServerSettings(db=":memory:").keys_path is None
    assert ServerSettings(db=":memory:", keys="/k").keys_path == "/k"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.2", False),
     ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_tenant_namespacing_is_injective_and_checked() -> None:
    acme = Principal("acme")
    assert acme.stored_user("alice") == "acme/alice"
    assert acme.stored_user("x/alice") == "acme/x/alice"  # a '/' in a user id stays the user's
    assert acme.public_user("acme/x/alice") == "x/alice"
    assert Principal("acme-x").stored_user("alice") != Principal("acme").stored_user("-x/alice")
    with pytest.raises(PermissionDeniedError):
        acme.public_user("other/alice")
    with pytest.raises(ScopeError):
        acme.stored_user("a" * (256 - len("acme/") + 1))
    assert acme.stored_user("a" * (256 - len("acme/"))).startswith("acme/")
    with pytest.raises(ScopeError):
        acme.stored_user("bad\x1fid")
    limited = Principal("acme", users="bot-*", read_only=True)
    assert limited.stored_user("bot-1") == "acme/bot-1"
    with pytest.raises(PermissionDeniedError, match="bot-"):
        limited.stored_user("alice")
    with pytest.raises(PermissionDeniedError, match="read-only"):
        limited.stored_user("bot-1", write=True)
    assert Principal(None).stored_user("acme/alice") == "acme/alice"  # open mode: as given


def test_keys_are_hashed_and_revocation_is_immediate(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.keys")
    assert not store.any_active() and store.list() == []
    key, listed = store.create("acme", users="a*", read_only=True, note="n")
    other, _ = store.create("beta")
    assert key.startswith(f"egk_{listed.id}_") and len(key) > 40
    raw = (tmp_path / "k.keys").read_bytes()
    assert key.encode() not in raw and key.split("_")[-1].encode() not in raw
    assert store.authenticate(key) == Principal("acme", "a*", True, listed.id)
    store.revoke(listed.id)  # within the same millisecond as the last read: still seen
    with pytest.raises(AuthenticationError, match="revoked"):
        store.authenticate(key)
    assert store.authenticate(other).tenant == "beta"
    with pytest.raises(AuthenticationError, match="unknown"):
        store.authenticate(key + "x")
    with pytest.raises(NotFoundError):
        store.revoke("deadbeef")
    assert [k.active for k in store.list()] == [False, True]
    assert [k.tenant for k in store.list("beta")] == ["beta"]
    for bad in ("", "Acme", "a/b", "a" * 64, "-a"):
        with pytest.raises(InvalidInputError):
            store.create(bad)
    assert KeyStore(tmp_path / "other.keys").authenticate  # a missing file: no keys, no error
    assert not KeyStore(tmp_path / "other.keys").any_active()


def test_cursor_round_trip_and_garbage() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    record = MemoryRecord(
        id="abc", kind=RecordKind.TURN, text="t", user_id="u", session_id="s/1", agent_id=None,
        role="user", name=None, seq=7, timestamp=t0, created_at=t0,
    )  # fmt: skip
    anchor = decode_cursor(encode_cursor(record), "acme/u")
    assert (anchor.session_id, anchor.seq, anchor.kind, anchor.id, anchor.user_id) == (
        "s/1", 7, RecordKind.TURN, "abc", "acme/u",
    )  # fmt: skip
    for bad in ("", "!!", "bnVsbA", "WzEsMiwzXQ", "WyJzIiwgLTEsICJ0dXJuIiwgIngiXQ"):
        with pytest.raises(InvalidInputError, match="cursor"):
            decode_cursor(bad, "u")


def test_llm_errors_have_their_statuses_and_hide_the_endpoint() -> None:
    import json

    from engram import LLMOutputError, LLMUnavailableError
    from engram.server.errors import NeedsLLMError, engram_error_response

    down = engram_error_response(LLMUnavailableError("openai:m at http://10.0.0.5:8000/v1: x"))
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    error = json.loads(down.body)["error"]
    assert error["type"] == "LLMUnavailableError" and "10.0.0.5" not in error["message"]
    assert engram_error_response(LLMOutputError("bad JSON")).status_code == 502
    missing = engram_error_response(NeedsLLMError("this needs an LLM"))
    assert missing.status_code == 501
    assert json.loads(missing.body)["error"] == {
        "type": "ConfigurationError", "message": "this needs an LLM"
    }  # fmt: skip
    assert engram_error_response(ConfigurationError("broken")).status_code == 500


def test_the_llm_table_of_the_config_file_is_not_a_server_setting(tmp_path: Path) -> None:
    config = tmp_path / "engram.toml"
    config.write_text('worker_interval = 0.5\n[llm]\nbase_url = "http://h/v1"\n', "utf-8")
    loaded = ServerSettings.load(str(config))
    assert loaded.worker_interval == 0.5 and loaded.config_path == str(config)
    assert loaded.model_copy(update={"db": "x.db"}).config_path == str(config)
    assert ServerSettings.load().config_path is None


def test_the_wire_search_config_has_every_field_of_search_config() -> None:
    """A field added to SearchConfig must be added to its REST model too (else a Client
    sending it gets 'Extra inputs are not permitted')."""
    from dataclasses import fields

    from engram import HYBRID, SearchConfig
    from engram.server.schemas import SearchConfigIn

    wanted = {f.name for f in fields(SearchConfig)} - {"extra"}
    assert set(SearchConfigIn.model_fields) == wanted
    assert SearchConfigIn.of(HYBRID).to_config() == HYBRID
