"""The REST API end to end: real ``engram serve`` processes (tests/servers.py), real HTTP.

Writes are seen by the next read, and after a restart; adds are idempotent; list pages neither
skip nor repeat records while others are added and deleted; history records every change; every
failure has the one error body and its documented status (src/engram/server/errors.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import ServerProcess, list_all, rest_server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """One server for the tests of this module that share its state (each uses its own users)."""
    with rest_server(tmp_path_factory.mktemp("api") / "engram.db", env=server_env) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_kept_alive_connections_answer_at_once(http: httpx.Client) -> None:
    """A response is sent as soon as it is ready (TCP_NODELAY): without it every response on a
    kept-alive connection waited for the client's delayed ACK, 40 ms each on Linux."""
    http.get("/healthz")
    times = []
    for _ in range(21):
        start = time.perf_counter()
        assert http.get("/healthz").status_code == 200
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.03, times


# -- helpers ------------------------------------------------------------------------------------

MAX_BODY = 4 * 1024 * 1024  # the default max_body_bytes
MAX_CHARS = 100_000  # engram.write.messages.MAX_CONTENT_CHARS


def add(http: httpx.Client, user: str, session: str, *texts: str, **extra: object) -> list[dict]:
    """POST /v1/messages, alternating user and assistant turns; the records returned."""
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)
    ]
    body = {"user_id": user, "session_id": session, "messages": messages, **extra}
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 201, response.text
    records: list[dict] = response.json()["records"]
    return records


def search_ids(http: httpx.Client, user: str, query: str, **extra: object) -> list[str]:
    response = http.post("/v1/search", json={"user_id": user, "query": query, **extra})
    assert response.status_code == 200, response.text
    return [hit["record"]["id"] for hit in response.json()["hits"]]


def stats(http: httpx.Client, user: str) -> dict:
    response = http.get("/v1/stats", params={"user_id": user})
    assert response.status_code == 200, response.text
    found: dict = response.json()
    return found


def assert_error(response: httpx.Response, status: int, kind: str) -> dict:
    """The one error body: ``{"error": {"type", "message"[, "details"]}}`` with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error: dict = body["error"]
    assert set(error) <= {"type", "message", "details"}, error
    assert error["type"] == kind, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def raw_request(server: ServerProcess, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Send bytes on a socket of its own (the body may be cut short by the server's answer);
    the status and the JSON body of the response."""
    host, port = httpx.URL(server.url).host, httpx.URL(server.url).port
    assert port is not None
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):  # the server may answer, and close, before the end
            for start in range(0, len(body), 1 << 16):
                sock.sendall(body[start : start + (1 << 16)])
        data = b""
        for _ in range(10_000):  # bounded; the answers are small
            if b"\r\n\r\n" in data and len(data.partition(b"\r\n\r\n")[2]) >= _length(data):
                break
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, json.loads(payload)


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62


def chunked(body: bytes, size: int = 1 << 16) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
             for i in range(0, len(body), size)]  # fmt: skip
    return b"".join(parts) + b"0\r\n\r\n"


def json_of_size(size: int) -> bytes:
    """A search body of exactly ``size`` bytes."""
    skeleton = b'{"user_id":"u","query":""}'
    return skeleton[:-2] + b"q" * (size - len(skeleton)) + skeleton[-2:]


# -- reads see writes ---------------------------------------------------------------------------


def test_writes_are_found_at_once_and_after_a_restart(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    db = tmp_path / "restart.db"
    words = [f"zq{n:03d}marker" for n in range(25)]
    added: dict[str, str] = {}
    with rest_server(db, env=server_env) as first, first.client() as http:
        for n, word in enumerate(words):  # each search right after its add, on two connections
            (record,) = add(http, "u", f"s{n % 3}", f"I bought a {word} in Lisbon")
            added[word] = record["id"]
            assert record["id"] in search_ids(http, "u", word)
            assert record["id"] in search_ids(http, "u", word, config="lexical")
            with first.client() as other:
                assert record["id"] in search_ids(other, "u", f"what {word} did I buy")
                assert other.get(f"/v1/records/{record['id']}", params={"user_id": "u"}).is_success
        before = stats(http, "u")
    with rest_server(db, env=server_env) as second, second.client() as http:
        for word, rid in added.items():
            assert search_ids(http, "u", word)[0] == rid
        assert stats(http, "u") == before
        listed = [r["id"] for r in list_all(http, "u")]
        assert sorted(listed) == sorted(added.values())


def test_adding_again_returns_the_same_records_and_stores_nothing_twice(http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "My sister moved to Porto.", "id": "m1"},
        {"role": "assistant", "content": "How exciting!", "id": "m2"},
        {"role": "user", "content": "She works at a bakery.", "timestamp": "2024-05-01T10:00:00Z"},
    ]
    body = {"user_id": "idem", "session_id": "s", "messages": messages}
    first = http.post("/v1/messages", json=body)
    assert first.status_code == 201, first.text
    counts = stats(http, "idem")
    for _ in range(3):
        again = http.post("/v1/messages", json=body)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert stats(http, "idem") == counts
    partly = http.post("/v1/messages", json={**body, "messages": messages[1:]})
    assert partly.json()["records"] == first.json()["records"][1:]
    assert stats(http, "idem") == counts
    assert counts["records"]["turn"] == 3
    assert [r["id"] for r in list_all(http, "idem")] == [r["id"] for r in first.json()["records"]]


def test_list_pages_neither_skip_nor_repeat_while_others_add_and_delete(
    http: httpx.Client,
) -> None:
    user = "pager"
    for session in ("s1", "s2", "s3"):
        add(http, user, session, *(f"{session} turn {i} about gardening" for i in range(9)))
    start = [r["id"] for r in list_all(http, user)]
    assert len(start) == 27
    seen: list[str] = []
    deleted: set[str] = set()
    must_see: set[str] = set()
    cursor = None
    for page_no in range(100):
        params: dict[str, object] = {"user_id": user, "limit": 4}
        if cursor is not None:
            params["cursor"] = cursor
        page = http.get("/v1/records", params=params).json()
        seen += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # between pages: delete the record of the cursor (unless it is in "s9": see the next
        # test), one ahead and one behind; add turns behind the cursor ("s0" sorts first) and
        # ahead of it (a session "s9", after the others)
        ahead = [rid for rid in start if rid not in seen and rid not in deleted]
        anchor = None if page["records"][-1]["session_id"] == "s9" else seen[-1]
        for rid in (anchor, ahead[0] if ahead else None, seen[0] if page_no == 1 else None):
            if rid is not None and rid not in deleted:
                gone = http.delete(f"/v1/records/{rid}", params={"user_id": user})
                assert gone.status_code == 200, gone.text
                deleted.add(rid)
        add(http, user, "s0", f"a late turn behind the cursor, page {page_no}")
        (late,) = add(http, user, "s9", f"a late turn ahead of the cursor, page {page_no}")
        must_see.add(late["id"])
    else:
        raise AssertionError("the pages never ended")
    assert len(seen) == len(set(seen)), "a record was listed twice"
    kept = [rid for rid in start if rid not in deleted]
    assert set(kept) <= set(seen), "a record that was there all along was skipped"
    assert must_see <= set(seen), "a record added ahead of the cursor was skipped"
    assert page_no >= 5
    final = [r["id"] for r in list_all(http, user)]
    assert [rid for rid in seen if rid in final] == [rid for rid in final if rid in seen]


def test_a_turn_added_in_place_of_the_cursor_record_is_listed(http: httpx.Client) -> None:
    user = "reused-seq"
    add(http, user, "s", "first turn", "second turn")
    page = http.get("/v1/records", params={"user_id": user, "limit": 2}).json()
    last = page["records"][-1]
    assert http.delete(f"/v1/records/{last['id']}", params={"user_id": user}).is_success
    (third,) = add(http, user, "s", "third turn")
    rest = http.get("/v1/records", params={"user_id": user, "cursor": page["next_cursor"]})
    assert [r["id"] for r in rest.json()["records"]] == [third["id"]]


def test_update_and_delete_leave_a_history_without_the_texts(http: httpx.Client) -> None:
    user = "hist"
    (first, second) = add(http, user, "s", "I adopted a puppy named Biscuit.", "Cute name!")
    rid = first["id"]
    updated = http.patch(
        f"/v1/records/{rid}", json={"user_id": user, "text": "I adopted a kitten named Mochi."}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["text"] == "I adopted a kitten named Mochi."
    assert search_ids(http, user, "kitten Mochi", config="lexical")[0] == rid
    assert search_ids(http, user, "puppy Biscuit", config="lexical") == []
    events = http.get(f"/v1/records/{rid}/history", params={"user_id": user}).json()["events"]
    assert [(e["event"], e["old_text"], e["new_text"]) for e in events] == [
        ("ADD", None, "I adopted a puppy named Biscuit."),
        ("UPDATE", "I adopted a puppy named Biscuit.", "I adopted a kitten named Mochi."),
    ]
    gone = http.delete(f"/v1/records/{rid}", params={"user_id": user})
    assert gone.status_code == 200
    assert rid in gone.json()["deleted"]
    assert_error(http.get(f"/v1/records/{rid}", params={"user_id": user}), 404, "NotFoundError")
    assert_error(http.delete(f"/v1/records/{rid}", params={"user_id": user}), 404, "NotFoundError")
    patch = http.patch(f"/v1/records/{rid}", json={"user_id": user, "text": "again"})
    assert_error(patch, 404, "NotFoundError")
    events = http.get(f"/v1/records/{rid}/history", params={"user_id": user}).json()["events"]
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "DELETE"]
    assert all(e["old_text"] is None and e["new_text"] is None for e in events), events
    assert rid not in search_ids(http, user, "kitten Mochi")
    assert [r["id"] for r in list_all(http, user)] == [second["id"]]


def test_forget_a_session_then_the_user(http: httpx.Client) -> None:
    user = "forgetful"
    add(http, user, "keep", "I play the cello.", "Lovely.")
    add(http, user, "drop", "My passport number is 123.", "Noted.", "And my bank is X.")
    add(http, "bystander", "drop", "I also have a session called drop.")
    forgot = http.post("/v1/forget", json={"user_id": user, "session_id": "drop"})
    assert forgot.status_code == 200, forgot.text
    assert forgot.json()["forgotten"] >= 3  # turns, and the round and window keys
    assert list_all(http, user, session_id="drop") == []
    assert len(list_all(http, user, session_id="keep")) == 2
    assert search_ids(http, user, "passport bank", config="lexical") == []
    assert len(list_all(http, "bystander")) == 1
    total = sum(stats(http, user)["records"].values())
    forgot = http.post("/v1/forget", json={"user_id": user})
    assert forgot.json() == {"forgotten": total}
    assert stats(http, user)["records"] == {}
    assert list_all(http, user) == []
    assert http.post("/v1/forget", json={"user_id": user}).json() == {"forgotten": 0}
    assert len(list_all(http, "bystander")) == 1


def test_stats_health_and_the_docs(http: httpx.Client) -> None:
    add(http, "counted", "s1", "one", "two", "three")
    add(http, "counted", "s2", "four")
    mine = stats(http, "counted")
    assert (mine["users"], mine["sessions"], mine["records"]["turn"]) == (1, 2, 4)
    assert mine["embedder"] == "hash-256" and mine["dim"] == 256
    everyone = http.get("/v1/stats").json()  # the open mode may see store-wide counts
    assert everyone["users"] >= 2 and everyone["records"]["turn"] >= 4
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready", "llm": None}
    schema = http.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert {"/v1/messages", "/v1/search", "/v1/records", "/v1/records/{record_id}"} <= set(
        schema["paths"]
    )
    page = http.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/openapi.json" in page.text


def test_without_an_llm_the_llm_routes_are_501_and_the_rest_works(http: httpx.Client) -> None:
    """No ENGRAM_LLM_BASE_URL: answers, processing and synchronous extraction are 501
    ConfigurationError (nothing is stored); queueing, fact search and as-of reads work."""
    message = {"role": "user", "content": "I love chess."}
    body = {"user_id": "plain", "messages": [message]}
    for response in (
        http.post("/v1/answer", json={"user_id": "plain", "question": "what?"}),
        http.post("/v1/jobs/process", json={"user_id": "plain"}),
        http.post("/v1/messages", json={**body, "extract": "sync"}),
    ):
        error = assert_error(response, 501, "ConfigurationError")
        assert "needs an LLM" in error["message"]
    assert list_all(http, "plain") == []
    assert http.post("/v1/messages", json={**body, "extract": "background"}).status_code == 201
    assert stats(http, "plain")["pending_jobs"] == 1  # queued for a server that has an LLM
    found = http.post("/v1/search/facts", json={"user_id": "plain", "query": "chess"})
    assert found.status_code == 200 and found.json() == {"hits": []}
    assert len(list_all(http, "plain", as_of="2999-01-01")) == 1
    assert list_all(http, "plain", as_of="2000-01-01") == []
    bad = http.post("/v1/messages", json={**body, "extract": "now"})
    assert_error(bad, 422, "InvalidInputError")


# -- errors -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owned(http: httpx.Client) -> str:
    """The id of a record of user "owner" (others must not reach it)."""
    (record,) = add(http, "owner", "s", "the owner's secret turn")
    return record["id"]


LONG_ID = "u" * 257
S = "/v1/search"
BAD_USERS = ["", "a\x00b", LONG_ID, " ", "tab\tbed"]


@pytest.mark.parametrize("user", BAD_USERS, ids=["empty", "nul", "257-chars", "space", "tab"])
def test_a_bad_user_id_is_422_everywhere(http: httpx.Client, user: str) -> None:
    message = [{"role": "user", "content": "hi"}]
    calls = [
        http.post("/v1/messages", json={"user_id": user, "messages": message}),
        http.post(S, json={"user_id": user, "query": "hi"}),
        http.post("/v1/search/sessions", json={"user_id": user, "query": "hi"}),
        http.get("/v1/records", params={"user_id": user}),
        http.get("/v1/records/x", params={"user_id": user}),
        http.patch("/v1/records/x", json={"user_id": user, "text": "t"}),
        http.delete("/v1/records/x", params={"user_id": user}),
        http.get("/v1/records/x/history", params={"user_id": user}),
        http.post("/v1/forget", json={"user_id": user}),
        http.get("/v1/stats", params={"user_id": user}),
    ]
    for response in calls:
        assert_error(response, 422, "ScopeError")


REQUESTS: list[tuple[str, str, dict[str, object], int, str]] = [
    ("POST", S, {"json": {"user_id": "u", "query": "x", "limit": 0}}, 422, "InvalidInputError"),
    ("POST", S, {"json": {"user_id": "u", "query": "x", "limit": 1001}}, 422, "InvalidInputError"),
    ("POST", S, {"json": {"user_id": "u", "query": ""}}, 422, "InvalidInputError"),
    ("POST", S, {"json": {"user_id": "u", "query": " \n\t "}}, 422, "InvalidInputError"),
    ("POST", S, {"json": {"user_id": "u", "query": "x", "config": "best"}}, 422,
     "InvalidInputError"),
    ("POST", S, {"json": {"user_id": "u", "query": "x", "config": {"candidates": 0}}}, 422,
     "InvalidInputError"),
    ("POST", S, {"json": {"user_id": "u", "query": "x", "config": {"key_kinds": []}}}, 422,
     "InvalidInputError"),
    ("POST", S, {"json": {"user_id": "u", "query": "x", "surprise": 1}}, 422, "InvalidInputError"),
    ("POST", S, {"json": {"query": "x"}}, 422, "InvalidInputError"),
    ("POST", S, {"json": ["not", "an", "object"]}, 422, "InvalidInputError"),
    ("POST", "/v1/search/sessions", {"json": {"user_id": "u", "query": "x", "session_id": "s"}},
     422, "InvalidInputError"),
    ("GET", "/v1/records", {"params": {"user_id": "u", "limit": 0}}, 422, "InvalidInputError"),
    ("GET", "/v1/records", {"params": {"user_id": "u", "limit": "many"}}, 422,
     "InvalidInputError"),
    ("GET", "/v1/records", {"params": {"user_id": "u", "kind": "nope"}}, 422, "InvalidInputError"),
    ("GET", "/v1/records", {"params": {"user_id": "u", "cursor": "not-a-cursor"}}, 422,
     "InvalidInputError"),
    ("GET", "/v1/records", {"params": {}}, 422, "InvalidInputError"),
    ("POST", "/v1/messages", {"json": {"user_id": "u", "messages": []}}, 422, "InvalidInputError"),
    ("POST", "/v1/messages", {"json": {"user_id": "u", "messages": [{"role": "user"}]}}, 422,
     "InvalidInputError"),
    ("POST", "/v1/messages",
     {"json": {"user_id": "u", "messages": [{"role": "user", "content": ""}]}}, 422,
     "InvalidInputError"),
    ("POST", "/v1/messages",
     {"json": {"user_id": "u", "messages": [{"role": "user", "content": "x"}] * 1001}}, 422,
     "InvalidInputError"),
    ("POST", "/v1/messages",
     {"json": {"user_id": "u", "session_date": "someday",
               "messages": [{"role": "user", "content": "x"}]}}, 422, "InvalidInputError"),
    ("GET", "/v1/records/no-such-record", {"params": {"user_id": "u"}}, 404, "NotFoundError"),
    ("DELETE", "/v1/records/no-such-record", {"params": {"user_id": "u"}}, 404, "NotFoundError"),
    ("PATCH", "/v1/records/no-such-record", {"json": {"user_id": "u", "text": "t"}}, 404,
     "NotFoundError"),
    ("GET", "/v1/records/no-such-record/history", {"params": {"user_id": "u"}}, 404,
     "NotFoundError"),
    ("GET", "/v1/no-such-route", {}, 404, "NoSuchRoute"),
    ("GET", "/", {}, 404, "NoSuchRoute"),
    ("PUT", S, {"json": {}}, 405, "MethodNotAllowed"),
    ("GET", S, {}, 405, "MethodNotAllowed"),
    ("DELETE", "/v1/messages", {}, 405, "MethodNotAllowed"),
    ("POST", "/healthz", {"json": {}}, 405, "MethodNotAllowed"),
    ("POST", "/v1/records", {"json": {}}, 405, "MethodNotAllowed"),
    ("POST", S, {"content": b'{"user_id": "u", "query": ', "headers": {"content-type":
     "application/json"}}, 400, "MalformedRequest"),
    ("POST", S, {"content": b"\xff\xfe{}", "headers": {"content-type": "application/json"}}, 400,
     "MalformedRequest"),
    ("POST", S, {"content": b'{"user_id": "u", "query": "x"}',
                 "headers": {"content-type": "text/plain"}}, 415, "UnsupportedMediaType"),
    ("POST", S, {"data": {"user_id": "u", "query": "x"}}, 415, "UnsupportedMediaType"),
    ("POST", S, {"content": b'{"user_id": "u", "query": "x"}'}, 415, "UnsupportedMediaType"),
    ("PATCH", "/v1/records/x", {"content": b"{}", "headers": {"content-type": "text/json"}}, 415,
     "UnsupportedMediaType"),
    ("GET", "/v1/records", {"params": {"user_id": "u"}, "headers": {"authorization": "Basic x"}},
     401, "AuthenticationError"),
    ("GET", "/v1/records", {"params": {"user_id": "u"}, "headers": {"x-api-key": "egk_1_2"}},
     401, "AuthenticationError"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "kind"), REQUESTS)
def test_every_error_has_the_one_body_and_its_status(
    http: httpx.Client, method: str, path: str, kwargs: dict, status: int, kind: str
) -> None:
    assert_error(http.request(method, path, **kwargs), status, kind)


def test_another_users_record_is_not_found(http: httpx.Client, owned: str) -> None:
    path = f"/v1/records/{owned}"
    for response in (
        http.get(path, params={"user_id": "intruder"}),
        http.get(f"{path}/history", params={"user_id": "intruder"}),
        http.patch(path, json={"user_id": "intruder", "text": "mine now"}),
        http.delete(path, params={"user_id": "intruder"}),
    ):
        error = assert_error(response, 404, "NotFoundError")
        assert "secret" not in error["message"]
    assert http.get(path, params={"user_id": "owner"}).json()["text"] == "the owner's secret turn"


def test_a_body_over_the_limit_is_413_by_its_content_length(server: ServerProcess) -> None:
    head = (
        b"POST /v1/search HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    )
    status, body = raw_request(server, head, b'{"user_id": "u", ')  # the rest never comes
    assert status == 413
    assert body["error"]["type"] == "PayloadTooLarge"


def test_unicode_round_trips_byte_exact(http: httpx.Client) -> None:
    texts = [
        "שלום, מה שלומך? I'm fine \u202etxet desrever\u202c",  # RTL and bidi controls
        "family 👩\u200d👩\u200d👧\u200d👦, flags 🇵🇹🇯🇵, skin 👍🏽",
        "astral \U0001d518\U0001d52b\U0001d526 \U0001f600, fullwidth \uff46\uff55\uff4c\uff4c",
        "combining e\u0301 (not é), a\u030a\u0323, Hangul \u1100\u1161 vs \uac00, \ufeffBOM",
        "zero\u200bwidth, nbsp\u00a0here, line\u2028separator, 中文\uff0c日本語",
    ]
    records = add(http, "unicode", "s", *texts)
    assert [r["text"] for r in records] == texts
    for record, text in zip(records, texts, strict=True):
        got = http.get(f"/v1/records/{record['id']}", params={"user_id": "unicode"})
        assert got.json()["text"].encode("utf-8") == text.encode("utf-8")
        assert text.encode("utf-8") in got.content  # sent as UTF-8, not as \\u escapes
    assert [r["text"] for r in list_all(http, "unicode")] == texts
    assert records[0]["id"] in search_ids(http, "unicode", "שלום", config="lexical")


def test_nul_and_lone_surrogates_are_refused_with_valid_utf8_json(http: httpx.Client) -> None:
    message = {"role": "user", "content": "fine"}
    bodies = [
        {"user_id": "u", "messages": [{"role": "user", "content": "nul \x00 inside"}]},
        {"user_id": "u", "messages": [{"role": "user", "content": "lone \ud800 surrogate"}]},
        {"user_id": "u", "messages": [{"role": "user", "content": "\udfff"}]},
        {"user_id": "u", "messages": [{**message, "name": "\udbff"}]},
        {"user_id": "u", "messages": [{**message, "metadata": {"\ud800": "\udc00x"}}]},
        {"user_id": "u\ud800", "messages": [message]},
        {"user_id": "u", "session_id": "\ud800", "messages": [message]},
        {"user_id": "u", "messages": [message], "\ud800": 1},
    ]
    for body in bodies:  # json.dumps escapes the surrogates: valid JSON, invalid Unicode
        for path in ("/v1/messages", S):
            response = http.post(
                path, content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert response.status_code == 422, response.text
            json.loads(response.content.decode("utf-8", errors="strict"))
            assert_error(response, 422, response.json()["error"]["type"])
    query = {"user_id": "u", "query": "lone \ud800"}
    response = http.post(S, content=json.dumps(query), headers={"content-type": "application/json"})
    assert_error(response, 422, "InvalidInputError")
    assert_error(http.get("/v1/records/x", params={"user_id": "a\x00"}), 422, "ScopeError")
    assert list_all(http, "u") == []


def test_content_of_the_maximum_size_is_accepted_and_one_more_is_refused(
    http: httpx.Client,
) -> None:
    for unit in ("word ", "😀"):  # code points, not UTF-16 units or bytes
        text = (unit * MAX_CHARS)[:MAX_CHARS]
        (record,) = add(http, "big", f"s-{len(unit)}", text)
        assert (
            http.get(f"/v1/records/{record['id']}", params={"user_id": "big"}).json()["text"]
            == text
        )
        too_long = {"user_id": "big", "messages": [{"role": "user", "content": text + "x"}]}
        assert_error(http.post("/v1/messages", json=too_long), 422, "InvalidInputError")
        update = {"user_id": "big", "text": text + "x"}
        assert_error(http.patch(f"/v1/records/{record['id']}", json=update), 422,
                     "InvalidInputError")  # fmt: skip
    assert_error(http.post(S, json={"user_id": "big", "query": "q" * (MAX_CHARS + 1)}), 422,
                 "InvalidInputError")  # fmt: skip


def test_a_chunked_body_over_the_limit_is_413(server: ServerProcess) -> None:
    """Without a Content-Length the limit is counted while reading. (FastAPI turned the
    middleware's exception into a 400 'There was an error parsing the body'.)"""
    head = (
        b"POST /v1/search HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    status, body = raw_request(server, head, chunked(json_of_size(MAX_BODY + 1)))
    assert (status, body["error"]["type"]) == (413, "PayloadTooLarge"), body
    status, body = raw_request(server, head, chunked(json_of_size(MAX_BODY)))
    assert (status, body["error"]["type"]) == (422, "InvalidInputError"), body  # a long query
    with httpx.Client(base_url=server.url) as http:  # and a client's streamed body
        parts = (
            json_of_size(MAX_BODY + 1)[i : i + (1 << 20)] for i in range(0, MAX_BODY + 1, 1 << 20)
        )
        response = http.post(S, content=parts, headers={"content-type": "application/json"})
        assert_error(response, 413, "PayloadTooLarge")


def cursor_of(*position: object) -> str:
    """A cursor as the server encodes one (base64 of the JSON of its position), for forgeries."""
    raw = json.dumps(list(position)).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@pytest.mark.parametrize(
    "position",
    [
        ("s", 0, "turn", "\ud800"),  # was a 500: the store could not encode the id
        ("\udfff", 0, "turn", "x"),
        ("s\x00", 0, "turn", "x"),
        ("s", 0, "turn", ""),
        ("s", 0, "turn", "x" * 300),
        ("s", -1, "turn", "x"),
        ("s", True, "turn", "x"),
        ("s", 0, "bogus", "x"),
        ("s", 0, "turn"),
        ("s", 0, "turn", "x", "extra"),
    ],
)
def test_a_forged_cursor_is_422(http: httpx.Client, position: tuple[object, ...]) -> None:
    response = http.get("/v1/records", params={"user_id": "u", "cursor": cursor_of(*position)})
    assert_error(response, 422, "InvalidInputError")


HUGE = "1e308"


@pytest.mark.parametrize(
    "config",
    [
        '{"weights": {"lexical": Infinity}}',  # Python's json reads these; they were 500s
        '{"weights": {"lexical": NaN}}',
        '{"recency_weight": -Infinity}',
        '{"time_tolerance_days": NaN, "time_weight": 1}',
        f'{{"fusion": "weighted", "weights": {{"lexical": {HUGE}, "semantic": {HUGE}}}}}',
        f'{{"recency_weight": {HUGE}, "speaker_weight": {HUGE}}}',
        f'{{"weights": {{"semantic": -{HUGE}}}}}',
    ],
)
def test_a_config_with_numbers_no_score_can_hold_is_422(http: httpx.Client, config: str) -> None:
    """Scores must be finite to be JSON: a config that could make them infinite or NaN is
    refused, instead of failing the response (500)."""
    add(http, "scores", "s", "Melanie painted a lake.", "Nice lake!")
    body = f'{{"user_id": "scores", "query": "what did Melanie paint", "config": {config}}}'
    for path in (S, "/v1/search/sessions"):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
        assert_error(response, 422, "InvalidInputError")


def test_the_largest_weights_give_finite_scores(http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "I painted a lake last week.", "name": "Melanie"},
        {"role": "assistant", "content": "What colours did you use?", "name": "Bot"},
    ]
    http.post("/v1/messages", json={"user_id": "big-weights", "messages": messages})
    big = 1e6
    config = {
        "fusion": "weighted", "weights": {"lexical": big, "semantic": big, "sentence": big},
        "sentence": True, "recency_weight": big, "speaker_weight": big, "time_weight": big,
        "recency_half_life_days": 1e-300, "time_tolerance_days": 1e300,
    }  # fmt: skip
    body = {"user_id": "big-weights", "query": "what did Melanie paint last week", "config": config}
    for question_date in (None, "0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"):
        found = http.post(S, json={**body, "question_date": question_date})
        assert found.status_code == 200, found.text
        assert found.json()["hits"]
        assert all(math.isfinite(hit["score"]) for hit in found.json()["hits"])


def test_concurrent_clients_each_find_their_own_add_at_once(server: ServerProcess) -> None:
    """Six clients add to one user (a shared session and their own) and search right after
    each add, with every retriever: the new turn is always found."""
    misses: list[object] = []

    def client(n: int) -> None:
        with server.client() as http:
            for j in range(15):
                text = f"client {n} turn {j} zx{n}q{j}marker"
                session = "shared" if j % 2 else f"own-{n}"
                (record,) = add(http, "crowd", session, text)
                for config in ("hybrid", "lexical", "semantic"):
                    found = search_ids(http, "crowd", text, limit=5, config=config)
                    if record["id"] not in found:
                        misses.append((n, j, config, found))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    assert misses == []
    assert stats_of(server, "crowd")["records"]["turn"] == 90
    assert "Traceback" not in server.log, server.log


def stats_of(server: ServerProcess, user: str) -> dict:
    with server.client() as http:
        return stats(http, user)


# -- GET /v1/sessions -------------------------------------------------------------------------


def test_sessions_list_counts_turns_and_times(http: httpx.Client) -> None:
    """Each session once, in session-id order, with its turn count and first and last times;
    a session longer than one internal page of turns (1,000) is still one session."""
    user = "sessions-user"
    texts = [f"turn {i} of the long one" for i in range(1001)]
    for start in (0, 1000):
        add(http, user, "b-long", *texts[start : start + 1000], session_date="2024-02-01T00:00:00Z")
    add(http, user, "a-short", "hello", "hi there", session_date="2024-01-05T10:00:00Z",
        agent_id="bot-1")  # fmt: skip
    add(http, user, "a-short", "again", agent_id="bot-2")
    add(http, "sessions-other", "c-else", "not mine")
    found = http.get("/v1/sessions", params={"user_id": user})
    assert found.status_code == 200, found.text
    sessions = found.json()["sessions"]
    assert [(s["session_id"], s["turns"]) for s in sessions] == [("a-short", 3), ("b-long", 1001)]
    short, long = sessions
    assert short["first_at"].startswith("2024-01-05T10:00:00") and short["agent_ids"] == [
        "bot-1", "bot-2",
    ]  # fmt: skip
    assert short["last_at"] > short["first_at"]  # "again" has no date: it was said now
    assert long["agent_ids"] == [] and long["first_at"] == long["last_at"]
    assert len(list_all(http, user)) == 1004  # the same turns the records list has
    by_agent = http.get("/v1/sessions", params={"user_id": user, "agent_id": "bot-2"}).json()
    assert by_agent == {"sessions": [{**short, "turns": 1, "first_at": short["last_at"],
                                      "agent_ids": ["bot-2"]}]}  # fmt: skip
    assert http.get("/v1/sessions", params={"user_id": "nobody"}).json() == {"sessions": []}


def test_sessions_list_errors(http: httpx.Client) -> None:
    assert_error(http.get("/v1/sessions"), 422, "InvalidInputError")
    assert_error(http.get("/v1/sessions", params={"user_id": " "}), 422, "ScopeError")
    assert_error(http.post("/v1/sessions", json={"user_id": "a"}), 405, "MethodNotAllowed")


def test_users_are_listed_by_prefix_in_order_and_paged(http: httpx.Client) -> None:
    ids = ["lu-b", "lu-a/x", "lu-zoë", "lu-日本", "lu-a"]
    for user in ids:
        add(http, user, "s1", f"hello from {user}")
    everyone = http.get("/v1/users", params={"limit": 1000}).json()
    assert set(ids) <= set(everyone["users"]) and everyone["users"] == sorted(everyone["users"])
    answer = http.get("/v1/users", params={"prefix": "lu-"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"users": sorted(ids), "next": None}
    seen: list[str] = []
    paging: dict[str, object] = {"prefix": "lu-", "limit": 2}
    while True:
        page = http.get("/v1/users", params=paging).json()
        seen += page["users"]
        if page["next"] is None:
            break
        assert page["next"] == page["users"][-1] and len(page["users"]) == 2
        paging["after"] = page["next"]
    assert seen == sorted(ids)
    http.post("/v1/forget", json={"user_id": "lu-b"})
    assert "lu-b" not in http.get("/v1/users", params={"prefix": "lu-"}).json()["users"]
    assert_error(http.get("/v1/users", params={"limit": 0}), 422, "InvalidInputError")
    assert_error(http.get("/v1/users", params={"after": "a\x01b"}), 422, "ScopeError")
    assert_error(http.get("/v1/users", params={"prefix": "a\x7f"}), 422, "InvalidInputError")
