"""Tenants over HTTP, against real ``engram serve`` processes with keys made by ``engram keys``:
no request with one tenant's key ever sees or changes another tenant's data, even for the same
user ids; keys limited to some users or to reads are held to it; a revoked key stops at once;
and forgetting a user leaves no row of it in any table of the file."""

from __future__ import annotations

import base64
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import ServerProcess, list_all, rest_server, rule_stub, run_engram

A, B = "tenant-a", "tenant-b"  # tenant names
USERS = ("alice", "bob")
SESSIONS = ("s1", "s2", "shared")
KINDS = ("turn", "round", "window", "sentence", "fact", "summary")
FUZZ_REQUESTS = 400
SEED = 20240611
A_FACTS = ("I live in Zanzibar. I love kitesurfing.", "I love origami.")  # alice's, bob's
A_FACT_WORDS = ("Zanzibar", "kitesurfing", "origami")  # only in A's texts and facts


def keys_cli(env: dict[str, str], path: Path, *args: str) -> Any:
    """``engram keys ARGS --keys PATH``: its JSON output (the command must succeed)."""
    done = run_engram("keys", *args, "--keys", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return json.loads(done.stdout)


def test_keys_create_list_revoke(tmp_path: Path, server_env: dict[str, str]) -> None:
    path = tmp_path / "api.keys"
    made = keys_cli(server_env, path, "create", "--tenant", "acme", "--users", "team-*")
    assert isinstance(made, dict)
    assert made["key"].startswith(f"egk_{made['id']}_")
    assert (made["tenant"], made["users"], made["read_only"]) == ("acme", "team-*", False)
    listed = keys_cli(server_env, path, "list")
    assert listed == [{k: v for k, v in made.items() if k != "key"}]
    revoked = keys_cli(server_env, path, "revoke", made["id"])
    assert isinstance(revoked, dict) and revoked["revoked_at"] is not None
    assert made["key"] not in path.read_bytes().decode("latin-1")  # only its hash is stored


# -- two tenants on one server ------------------------------------------------------------------


@dataclass
class Tenants:
    server: ServerProcess
    db: Path
    keys_path: Path
    env: dict[str, str]
    keys: dict[str, str]  # "a", "b", "b-team" (users team-*), "b-read" (read-only): the secrets
    a_records: list[dict] = field(default_factory=list)  # every record of tenant A, all kinds
    a_markers: list[str] = field(default_factory=list)  # unique strings only A's texts hold

    def client(self, name: str | None) -> httpx.Client:
        return self.server.client(self.keys[name] if name else None)


def marker(tenant: str, n: int) -> str:
    return f"{tenant.upper().replace('-', '')}MARK{n:04d}x{random.Random(n).getrandbits(32):08x}"


def conversation(tenant: str, user: str, session: str, start: int) -> list[dict]:
    """Six messages whose texts, names and metadata carry markers of ``tenant``; the message
    ids are the same for both tenants."""
    messages = []
    for i in range(6):
        n = start + i
        text = f"{marker(tenant, n)} talks about the garden and the piano. Then the lake, again."
        messages.append({
            "id": f"{user}-{session}-m{i}", "role": "user" if i % 2 == 0 else "assistant",
            "content": text, "name": f"speaker{marker(tenant, n + 5000)}",
            "metadata": {"note": marker(tenant, n + 9000)},
        })  # fmt: skip
    return messages


def fill(http: httpx.Client, tenant: str, users: tuple[str, ...] = USERS) -> list[str]:
    """Both users' three sessions; the markers used."""
    used: list[str] = []
    n = 0
    for user in users:
        for session in SESSIONS:
            messages = conversation(tenant, user, session, n)
            body = {"user_id": user, "session_id": session, "agent_id": f"agent-{session}",
                    "messages": messages}  # fmt: skip
            response = http.post("/v1/messages", json=body)
            assert response.status_code == 201, response.text
            used += [marker(tenant, n + i + off) for i in range(6) for off in (0, 5000, 9000)]
            n += 6
    return used


def snapshot(http: httpx.Client) -> dict[str, Any]:
    """Everything of a tenant's users that the API shows: records, histories, stats."""
    state: dict[str, Any] = {}
    for user in USERS:
        records = list_all(http, user, kind=list(KINDS))
        state[user] = {
            "records": records,
            "history": [
                http.get(f"/v1/records/{r['id']}/history", params={"user_id": user}).json()
                for r in records
            ],
            "stats": http.get("/v1/stats", params={"user_id": user}).json(),
        }
    return state


def make_keys(env: dict[str, str], path: Path) -> dict[str, str]:
    """The four keys, made by ``engram keys create`` processes side by side."""
    specs = {
        "a": ("--tenant", A), "b": ("--tenant", B), "b-team": ("--tenant", B, "--users", "team-*"),
        "b-read": ("--tenant", B, "--read-only"),
    }  # fmt: skip
    with ThreadPoolExecutor(len(specs)) as pool:
        made = {k: pool.submit(keys_cli, env, path, "create", *v) for k, v in specs.items()}
        return {name: future.result()["key"] for name, future in made.items()}


def fill_facts(http: httpx.Client) -> None:
    """Tenant A's facts (alice's, extracted at once) and a job (bob's, left queued)."""
    for user, text, extract in (("alice", A_FACTS[0], "sync"), ("bob", A_FACTS[1], "background")):
        body = {"user_id": user, "session_id": "facts", "extract": extract,
                "messages": [{"role": "user", "content": text}]}  # fmt: skip
        assert http.post("/v1/messages", json=body).status_code == 201


@pytest.fixture(scope="module")
def tenants(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Tenants]:
    """Two tenants on a server with an LLM (the rule-model stub) and no worker thread."""
    root = tmp_path_factory.mktemp("tenancy")
    db, keys_path = root / "engram.db", root / "api.keys"
    keys = make_keys(server_env, keys_path)
    with (
        rule_stub() as stub,
        rest_server(
            db, "--keys", str(keys_path), env=stub.env(ENGRAM_WORKER_INTERVAL="0")
        ) as server,
    ):
        found = Tenants(server, db, keys_path, server_env, keys)
        with found.client("a") as a, found.client("b") as b:
            found.a_markers = fill(a, A) + list(A_FACT_WORDS)
            fill_facts(a)
            fill(b, B)
            found.a_records = [r for user in USERS for r in list_all(a, user, kind=list(KINDS))]
        yield found


def test_tenant_b_never_sees_tenant_as_facts_jobs_or_usage(tenants: Tenants) -> None:
    with tenants.client("a") as a:
        a_facts = list_all(a, "alice", kind="fact")
        assert sorted(f["text"] for f in a_facts) == ["user likes kitesurfing",
                                                      "user lives in Zanzibar"]  # fmt: skip
        before = {u: a.get("/v1/stats", params={"user_id": u}).json() for u in USERS}
        assert before["bob"]["pending_jobs"] == 1 and before["alice"]["llm"]["extract"]["calls"]
    with tenants.client("b") as b:
        assert list_all(b, "alice", kind="fact") == list_all(b, "bob", kind="fact") == []
        for user in USERS:
            mine = b.get("/v1/stats", params={"user_id": user}).json()
            assert mine["pending_jobs"] == 0 and "fact" not in mine["records"]
            assert mine["llm"]["extract"]["calls"] == 3  # B's own: one a session fill added
        hits = b.post("/v1/search/facts", json={"user_id": "alice", "query": "Zanzibar"})
        assert hits.status_code == 200 and hits.json() == {"hits": []}
        question = {"user_id": "alice", "question": "Where does the user live? Zanzibar?"}
        answer = b.post("/v1/answer", json=question).json()
        assert answer["text"] == "I do not know." and answer["citations"] == []
        assert not any(r["text"] in ("user lives in Zanzibar",) for r in answer["context"])
        processed = b.post("/v1/jobs/process", json={"user_id": "bob"})
        assert processed.status_code == 200 and processed.json()["jobs"] == []
        everyone = b.post("/v1/jobs/process", json={})  # every user's: the open mode only
        assert everyone.status_code == 403, everyone.text
    for name, user in (("b-read", "bob"), ("b-team", "bob"), ("b-read", None)):
        with tenants.client(name) as limited:
            body = {} if user is None else {"user_id": user}
            refused = limited.post("/v1/jobs/process", json=body)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["type"] == "PermissionDeniedError"
    with tenants.client("b-read") as read:  # an answer is a read
        assert read.post("/v1/answer", json=question).status_code == 200
    with tenants.client("a") as a:
        assert {u: a.get("/v1/stats", params={"user_id": u}).json() for u in USERS} == before


def cursor_of(*position: object) -> str:
    raw = json.dumps(list(position)).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def fuzz_request(rng: random.Random, t: Tenants) -> tuple[str, str, dict[str, Any]]:
    """One request of tenant B built from what A has: A's record ids, sessions, agents,
    cursors of A's records, A's texts as queries, prefixed and pattern user ids."""
    a_ids = [r["id"] for r in t.a_records]
    users = [*USERS, f"{A}/alice", f"{A}/bob", f"{B}/alice", "*", "%", "_", "alice%", "a*",
             "ali?e", "[ab]*", "alice ", " alice", "ALICE", "alice\u200b", "team-1", "../alice",
             f"{A}%2Falice", f"{A}\\alice", "tenant-a", "%2A"]  # fmt: skip
    record = rng.choice(t.a_records)
    rid = rng.choice([*a_ids * 4, "x", "%", "*", f"{A}/{record['id']}", record["id"].upper()])
    user = rng.choice(users)
    session = rng.choice([*SESSIONS, None, "%", "*", f"{A}/s1"])
    agent = rng.choice([None, "agent-s1", "agent-shared", "%"])
    query = rng.choice([record["text"], record["text"][:20], "garden piano lake", "*", "%",
                        rng.choice(t.a_markers)])  # fmt: skip
    cursor = rng.choice([
        cursor_of(record["session_id"], record["seq"], record["kind"], record["id"]),
        cursor_of(None, None, "turn", record["id"]), cursor_of("", -1, "window", "%"),
    ])  # fmt: skip
    config = rng.choice([None, "lexical", "semantic", "hybrid", {"sentence": True,
                         "key_kinds": ["turn", "round", "window", "sentence"]}])  # fmt: skip
    search = {"user_id": user, "query": query, "limit": rng.choice([1, 10, 1000]),
              "agent_id": agent, "config": config}  # fmt: skip
    message = {"role": "user", "content": "B probes the garden piano lake",
               "id": rng.choice([f"alice-{session}-m0", "fresh", record["id"]])}  # fmt: skip
    as_of = rng.choice([None, "2020-01-01", "2999-01-01T00:00:00Z"])
    extract = rng.choice([None, "sync", "background", "off"])
    choices: list[Callable[[], tuple[str, str, dict[str, Any]]]] = [
        lambda: ("POST", "/v1/search", {"json": {**search, "session_id": session}}),
        lambda: ("POST", "/v1/search/facts", {"json": {**search, "as_of": as_of}}),
        lambda: ("POST", "/v1/answer", {"json": {"user_id": user, "question": query,
                                                 "question_date": as_of}}),
        lambda: ("POST", "/v1/jobs/process", {"json": {"user_id": rng.choice([user, None])}}),
        lambda: ("GET", "/v1/records", {"params": {"user_id": user, "kind": "fact",
                                                   "as_of": as_of}}),
        lambda: ("POST", "/v1/search/sessions", {"json": search}),
        lambda: ("GET", "/v1/records", {"params": {
            "user_id": user, "session_id": session, "agent_id": agent, "cursor": cursor,
            "kind": rng.sample(KINDS, rng.randint(1, 3)), "limit": rng.choice([1, 5, 1000]),
        }}),
        lambda: ("GET", "/v1/records", {"params": {"user_id": user, "kind": list(KINDS)}}),
        lambda: ("GET", f"/v1/records/{rid}", {"params": {"user_id": user}}),
        lambda: ("GET", f"/v1/records/{rid}/history", {"params": {"user_id": user}}),
        lambda: ("PATCH", f"/v1/records/{rid}", {"json": {"user_id": user, "text": "B was here"}}),
        lambda: ("DELETE", f"/v1/records/{rid}", {"params": {"user_id": user}}),
        lambda: ("POST", "/v1/forget", {"json": {"user_id": user, "session_id": session}}),
        lambda: ("GET", "/v1/stats", {"params": {"user_id": user}}),
        lambda: ("GET", "/v1/stats", {}),
        lambda: ("POST", "/v1/messages", {"json": {"user_id": user, "session_id": session,
                                                   "messages": [message], "extract": extract}}),
    ]  # fmt: skip
    method, path, kwargs = rng.choice(choices)()
    for part in ("params", "json"):
        if kwargs.get(part):
            kwargs[part] = {k: v for k, v in kwargs[part].items() if v is not None}
    return method, path, kwargs


def records_in(body: Any) -> list[dict]:
    """The records of a response: of a page or an add, of search hits, of session hits."""
    if not isinstance(body, dict) or "error" in body or "users" in body:  # not stats
        return []
    found = [*body.get("records", []), *body.get("citations", []), *body.get("context", [])]
    hits = [*body.get("hits", []), *(h for s in body.get("sessions", []) for h in s["hits"])]
    return found + [h["record"] for h in hits]


def test_tenant_b_never_sees_or_changes_tenant_a(tenants: Tenants) -> None:
    rng = random.Random(SEED)
    a_ids = {r["id"] for r in tenants.a_records}
    secrets = a_ids | set(tenants.a_markers)
    with tenants.client("a") as a:
        before = snapshot(a)
    statuses: dict[int, int] = {}
    stored = set()  # A's ids that B has stored as message ids of its own: B may see those
    with tenants.client("b") as b, tenants.client("b-read") as b_read:
        for _ in range(FUZZ_REQUESTS):
            method, path, kwargs = fuzz_request(rng, tenants)
            http = b_read if rng.random() < 0.15 else b
            response = http.request(method, path, **kwargs)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text
            if response.status_code == 201:
                stored |= {m.get("id") for m in kwargs["json"]["messages"]} & a_ids
            for record in records_in(response.json()):
                assert record["id"] not in a_ids, (method, path, kwargs, record)
                assert set(record["message_ids"]) & a_ids <= stored
            sent = str(response.request.url) + response.request.content.decode("utf-8", "replace")
            leaked = {s for s in secrets - stored if s in response.text and s not in sent}
            assert not leaked, (method, path, kwargs, response.text[:500])
            if any(rid in path for rid in a_ids):  # A's record by its id: not found for B
                assert response.status_code in (403, 404, 422), (method, path, response.text)
    assert statuses.get(200, 0) + statuses.get(201, 0) > FUZZ_REQUESTS // 4, statuses
    assert statuses.get(404, 0) > 20, statuses
    with tenants.client("a") as a:
        assert snapshot(a) == before


def test_keys_are_held_to_their_users_and_to_reads(tenants: Tenants) -> None:
    message = [{"role": "user", "content": "team notes about the piano"}]
    with tenants.client("b-team") as team:
        for user in ("alice", "bob", "team", "Team-1", f"{B}/team-1"):
            for response in (
                team.post("/v1/search", json={"user_id": user, "query": "piano"}),
                team.get("/v1/records", params={"user_id": user}),
                team.post("/v1/messages", json={"user_id": user, "messages": message}),
                team.post("/v1/forget", json={"user_id": user}),
            ):
                assert response.status_code == 403, response.text
                assert response.json()["error"]["type"] == "PermissionDeniedError"
        added = team.post("/v1/messages", json={"user_id": "team-1", "messages": message})
        assert added.status_code == 201, added.text
        rid = added.json()["records"][0]["id"]
        assert team.get(f"/v1/records/{rid}", params={"user_id": "team-1"}).is_success
    with tenants.client("b-read") as read, tenants.client("b") as b:
        assert read.get(f"/v1/records/{rid}", params={"user_id": "team-1"}).is_success
        hits = read.post("/v1/search", json={"user_id": "team-1", "query": "piano"}).json()
        assert [h["record"]["id"] for h in hits["hits"]] == [rid]
        assert read.get("/v1/records", params={"user_id": "alice"}).is_success
        assert read.get(f"/v1/records/{rid}/history", params={"user_id": "team-1"}).is_success
        assert read.get("/v1/stats", params={"user_id": "alice"}).is_success
        for response in (
            read.post("/v1/messages", json={"user_id": "team-1", "messages": message}),
            read.patch(f"/v1/records/{rid}", json={"user_id": "team-1", "text": "no"}),
            read.delete(f"/v1/records/{rid}", params={"user_id": "team-1"}),
            read.post("/v1/forget", json={"user_id": "team-1"}),
            read.post("/v1/forget", json={"user_id": "team-1", "session_id": "default"}),
        ):
            assert response.status_code == 403, response.text
            assert response.json()["error"]["type"] == "PermissionDeniedError"
        assert b.get(f"/v1/records/{rid}", params={"user_id": "team-1"}).json()["id"] == rid
        everything = b.get("/v1/stats")  # store-wide counts are for the open mode only
        assert everything.status_code == 403, everything.text


def listed(http: httpx.Client, **params: Any) -> list[str]:
    """Every user GET /v1/users lists, page after page (two at a time) by its ``next``."""
    users: list[str] = []
    after = None
    while True:
        paging = {"limit": 2} if after is None else {"limit": 2, "after": after}
        response = http.get("/v1/users", params={**params, **paging})
        assert response.status_code == 200, response.text
        page = response.json()
        users += page["users"]
        if page["next"] is None:
            return users
        after = page["next"]


def test_tenant_b_never_lists_tenant_as_users(tenants: Tenants) -> None:
    message = [{"role": "user", "content": "a user of one tenant"}]
    with tenants.client("a") as a, tenants.client("b") as b, tenants.client("b-team") as team:
        for http, user in ((a, "a-only"), (b, "b-only"), (team, "team-listed")):
            assert http.post("/v1/messages", json={"user_id": user, "messages": message}).is_success
        try:
            mine, theirs, teams = listed(a), listed(b), listed(team)
            assert {*USERS, "a-only"} <= set(mine) and mine == sorted(mine)
            assert {*USERS, "b-only", "team-listed"} <= set(theirs)
            assert not {"b-only", "team-listed"} & set(mine) and "a-only" not in theirs
            assert listed(b, prefix="a-only") == [] and listed(b, after="a-onl", prefix="a-o") == []
            assert "team-listed" in teams and all(u.startswith("team-") for u in teams)
            for http, users in ((a, mine), (b, theirs)):  # (the fuzz test adds odd ids)
                for prefix in ("a", "a-", "b-", "team-", "tenant-a/"):
                    assert listed(http, prefix=prefix) == [u for u in users if u.startswith(prefix)]
            assert "a-only" in listed(a, prefix="a-") and "alice" in listed(b, prefix="a")
            assert listed(b, after="b-only") == [u for u in theirs if u > "b-only"]
        finally:
            a.post("/v1/forget", json={"user_id": "a-only"})
            b.post("/v1/forget", json={"user_id": "b-only"})
            b.post("/v1/forget", json={"user_id": "team-listed"})
        assert "a-only" not in listed(a) and "b-only" not in listed(b)


def test_no_key_a_wrong_key_and_a_revoked_key_are_401_at_once(tenants: Tenants) -> None:
    with tenants.client(None) as anonymous:
        for response in (
            anonymous.get("/v1/records", params={"user_id": "alice"}),
            anonymous.post("/v1/search", json={"user_id": "alice", "query": "piano"}),
            anonymous.get("/v1/records", params={"user_id": "alice"},
                          headers={"authorization": f"Bearer {tenants.keys['a']}x"}),
            anonymous.get("/v1/records", params={"user_id": "alice"},
                          headers={"x-api-key": "egk_00000000_guess"}),
        ):  # fmt: skip
            assert response.status_code == 401, response.text
            assert response.json()["error"]["type"] == "AuthenticationError"
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "MARK" not in response.text
        assert anonymous.get("/healthz").status_code == 200  # the probes need no key
        assert anonymous.get("/readyz").status_code == 200
    extra = keys_cli(tenants.env, tenants.keys_path, "create", "--tenant", "tenant-c")
    with tenants.server.client(extra["key"]) as c:
        assert c.get("/v1/records", params={"user_id": "alice"}).json()["records"] == []
        keys_cli(tenants.env, tenants.keys_path, "revoke", extra["id"])
        revoked = c.get("/v1/records", params={"user_id": "alice"})  # no restart in between
        assert revoked.status_code == 401, revoked.text
        assert extra["id"] in revoked.json()["error"]["message"]
    with tenants.client(None) as anonymous:  # the other keys still work, in either header
        for header in ({"authorization": f"Bearer {tenants.keys['a']}"},
                       {"authorization": f"bearer  {tenants.keys['a']}"},
                       {"x-api-key": tenants.keys["a"]}):  # fmt: skip
            found = anonymous.get("/v1/records", params={"user_id": "alice"}, headers=header)
            assert found.status_code == 200, found.text
            assert found.json()["records"]


def test_a_server_without_keys_refuses_to_listen_beyond_loopback(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    for keys in ("none", "revoked"):
        path = tmp_path / f"{keys}.keys"
        if keys == "revoked":
            made = keys_cli(server_env, path, "create", "--tenant", "gone")
            keys_cli(server_env, path, "revoke", made["id"])
        done = run_engram(
            "--db", str(tmp_path / "open.db"), "--embedder", "hash", "serve", "--host", "0.0.0.0",
            "--port", "0", "--keys", str(path), env=server_env, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0], done.stderr
        assert "engram keys create" in lines[0]


# -- forget leaves no row -----------------------------------------------------------------------


def rows_of(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the file (the server still has it open)."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
    finally:
        conn.close()


def test_forgetting_a_user_leaves_no_row_of_them_and_all_of_the_other_tenants(
    tenants: Tenants,
) -> None:
    with tenants.client("a") as a, tenants.client("b") as b:
        fill(b, B, ("alice",))  # whatever the fuzz left of B's alice, she has data now
        mine = list_all(b, "alice", kind=list(KINDS))
        assert mine
        before_a = snapshot(a)
        stored_b, stored_a = f"{B}/alice", f"{A}/alice"
        conn = sqlite3.connect(tenants.db)
        try:
            (uid,) = conn.execute("SELECT uid FROM lex_users WHERE user_id = ?", (stored_b,))
            rowids = {r[0] for r in conn.execute(
                "SELECT rowid FROM records WHERE user_id = ?", (stored_b,))}  # fmt: skip
            a_rows = conn.execute(
                "SELECT COUNT(*) FROM records WHERE user_id = ?", (stored_a,)
            ).fetchone()[0]
        finally:
            conn.close()
        forgot = b.post("/v1/forget", json={"user_id": "alice"})
        assert forgot.status_code == 200 and forgot.json()["forgotten"] == len(mine)
        assert list_all(b, "alice", kind=list(KINDS)) == []
        assert snapshot(a) == before_a
    ids = {r["id"] for r in mine}
    tables = rows_of(tenants.db)
    assert {"records", "vectors", "sources", "history", "generations", "lex_users", "lex_docs",
            "lex_postings", "meta"} <= set(tables)  # fmt: skip
    for table, rows in tables.items():
        for row in rows:
            for value in row:
                assert value != stored_b, (table, row)
                if isinstance(value, str):
                    assert not any(rid in value for rid in ids), (table, row)
    uid_of = {"lex_users": 0, "lex_docs": 1, "lex_postings": 0}
    for table, column in uid_of.items():
        assert all(row[column] != uid[0] for row in tables[table]), table
    for table, column in {"records": 0, "vectors": 0, "lex_docs": 0, "lex_postings": 2}.items():
        assert not rowids & {row[column] for row in tables[table]}, table
    assert sum(1 for row in tables["records"] if row[2] == stored_a) == a_rows
    lex_users = {row[1] for row in tables["lex_users"]}
    assert stored_a in lex_users and f"{B}/bob" in lex_users


def test_a_tenants_stats_say_nothing_of_the_others(tenants: Tenants) -> None:
    """Counts are the user's own; the size of the file, which grows with every tenant's writes,
    is not shown to a tenant."""
    with tenants.client("a") as a, tenants.client("b") as b:
        fill(b, B, ("stats-user",))
        before = b.get("/v1/stats", params={"user_id": "stats-user"}).json()
        assert before["size_bytes"] is None
        assert before["records"]["turn"] == 18 and (before["users"], before["sessions"]) == (1, 3)
        fill(a, A, ("stats-user",))
        fill(a, A, ("stats-user-2",))
        assert b.get("/v1/stats", params={"user_id": "stats-user"}).json() == before


def test_revoking_the_last_key_does_not_open_the_server(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    """A server that had keys keeps asking for one when they are all revoked: it was falling
    back to the keyless mode, where any loopback client (every client, behind a reverse proxy
    on the same machine) reads and writes every tenant's users by their stored ids."""
    path = tmp_path / "one.keys"
    made = keys_cli(server_env, path, "create", "--tenant", "solo")
    with rest_server(tmp_path / "one.db", "--keys", str(path), env=server_env) as server:
        with server.client(made["key"]) as tenant:
            body = {"user_id": "alice", "messages": [{"role": "user", "content": "my secret"}]}
            assert tenant.post("/v1/messages", json=body).status_code == 201
        keys_cli(server_env, path, "revoke", made["id"])
        with server.client(None) as anonymous:
            for user in ("solo/alice", "alice"):
                response = anonymous.get("/v1/records", params={"user_id": user})
                assert response.status_code == 401, response.text
                assert "my secret" not in response.text
        with server.client(made["key"]) as tenant:
            revoked = tenant.get("/v1/records", params={"user_id": "alice"})
            assert revoked.status_code == 401
            assert "revoked" in revoked.json()["error"]["message"]
