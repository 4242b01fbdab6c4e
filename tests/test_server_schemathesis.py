"""Schemathesis against a live ``engram serve``: requests generated from its own /openapi.json,
valid (positive) and invalid (negative), for every operation. No response is a 5xx, each one has
a documented status, content type and body schema; afterwards the file holds no half-written
record and exactly the turns the successful adds returned, less those deleted or forgotten.

The default tier sends about 1,300 requests; more with ``ENGRAM_SCHEMATHESIS_EXAMPLES=N``
(examples per operation and mode, default 60), e.g.::

    ENGRAM_SCHEMATHESIS_EXAMPLES=600 pytest tests/test_server_schemathesis.py -s
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from servers import rest_server, rule_stub
from store_file import check_file

EXAMPLES = int(os.environ.get("ENGRAM_SCHEMATHESIS_EXAMPLES", "0") or 0) or 60
SEED = 4242
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_schema_conformance,
]  # fmt: skip
USERS = ["alice", "bob", "ünïcødé 用户 👩\u200d💻", "u" * 256]
SESSIONS = ["s1", "s2", "default"]


class Model:
    """The turns the server said it stored, per user, less those it said it deleted: what the
    file must hold afterwards."""

    def __init__(self) -> None:
        self.turns: dict[str, dict[str, str | None]] = {}  # user -> turn id -> session

    def ids(self) -> list[str]:
        return [rid for turns in self.turns.values() for rid in turns]

    def observe(self, method: str, path: str, case: Any, response: Any) -> None:
        if response.status_code not in (200, 201):
            return
        body = case.body if isinstance(case.body, dict) else {}
        if method == "POST" and path == "/v1/messages":
            for record in response.json()["records"]:
                self.turns.setdefault(record["user_id"], {})[record["id"]] = record["session_id"]
        elif method == "DELETE":
            for rid in response.json()["deleted"]:
                for turns in self.turns.values():
                    turns.pop(rid, None)
        elif method == "POST" and path == "/v1/forget":
            user, session = body["user_id"], body.get("session_id")
            turns = self.turns.get(user, {})
            for rid in [r for r, s in turns.items() if session is None or s == session]:
                del turns[rid]


def clean(value: object, fallback: str) -> object:
    """A generated string without what ids and roles may not hold (control characters, lone
    surrogates), or ``fallback`` if nothing is left; other values as they are."""
    if not isinstance(value, str):
        return value
    kept = "".join(c for c in value if c.isprintable() and not "\ud800" <= c <= "\udfff")
    return kept if kept.strip() else fallback


def steer(case: Any, pick: int, model: Model) -> None:
    """Point most generated valid cases at data that can exist: known users and sessions, roles
    and ids without control characters, a stored record's id (random strings almost never name
    one, so without this nearly every request would stop at a 404 or a 422)."""
    if pick % 4 == 0:
        return  # as generated
    user = USERS[pick % len(USERS)]
    body = case.body if isinstance(case.body, dict) else {}
    if "user_id" in body:
        body["user_id"] = user
    for name in ("session_id", "agent_id"):
        if body.get(name) is not None:
            body[name] = SESSIONS[pick % 3] if pick % 3 else clean(body[name], "x")
    for n, message in enumerate(body.get("messages") or []):
        if isinstance(message, dict):
            message["role"] = ("user", "assistant", "system")[(pick + n) % 3]
            for name in ("id", "name"):
                if message.get(name) is not None:
                    message[name] = clean(message[name], f"{name}-{pick}")
            if isinstance(message.get("content"), str):
                message["content"] = message["content"].replace("\x00", "") or "hello"
    if isinstance(body.get("query"), str) and pick % 2:
        body["query"] = body["query"].replace("\x00", "") + " hello"
    if isinstance(case.query, dict) and "user_id" in case.query:
        case.query["user_id"] = user
    known = model.ids()
    if known and isinstance(case.path_parameters, dict) and "record_id" in case.path_parameters:
        case.path_parameters["record_id"] = known[pick % len(known)]


def stored_turns(db: Path) -> dict[str, set[str]]:
    conn = sqlite3.connect(db)
    try:
        found: dict[str, set[str]] = {}
        for user, rid in conn.execute("SELECT user_id, id FROM records WHERE kind = 'turn'"):
            found.setdefault(user, set()).add(rid)
        return found
    finally:
        conn.close()


@dataclass
class Run:
    """What the generated requests found."""

    session: Any
    model: Model = field(default_factory=Model)
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def operation(self, operation: Any, mode: GenerationMode) -> None:
        """``EXAMPLES`` generated requests to one operation, each response checked."""
        how = mode.value

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
        )  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 999))
        def run(case: Any, pick: int) -> None:
            if mode.is_positive:
                steer(case, pick, self.model)
            response = case.call(session=self.session, timeout=30)
            self.statuses[(operation.label, how, response.status_code)] += 1
            self.model.observe(operation.method.upper(), operation.path, case, response)
            try:
                case.validate_response(response, checks=CHECKS)
            except AssertionError as exc:  # a check failed: kept, to report them all
                self.failures.append(f"{operation.label} [{how}] {response.status_code}: {exc}")

        try:
            run()
        except Unsatisfiable:
            assert not mode.is_positive  # no invalid request to an operation without parameters


def test_generated_requests_never_fail_the_server(tmp_path: Path) -> None:
    db = tmp_path / "schemathesis.db"
    started = time.monotonic()
    with (
        rule_stub() as stub,  # an LLM, so that the LLM routes answer too
        rest_server(db, env=stub.env(ENGRAM_WORKER_INTERVAL="0")) as server,
        requests.Session() as session,
    ):
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 14
        run = Run(session)
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run.operation(operation, mode)
        seconds = time.monotonic() - started
        total = sum(run.statuses.values())
        print(f"\nschemathesis: {total} requests, {len(run.failures)} failures, {seconds:.1f} s")
        by_status = Counter[int]()
        for (_, _, status), count in run.statuses.items():
            by_status[status] += count
        print("by status:", dict(sorted(by_status.items())))
        assert not run.failures, "\n".join(run.failures[:10])
        assert total >= 18 * EXAMPLES - 100
        assert by_status[201] >= 10 and by_status[200] >= 100, by_status  # it reached the store
        assert server.proc.poll() is None
        assert "Traceback" not in server.log, server.log
    check_file(db)
    stored = stored_turns(db)
    expected = {user: set(turns) for user, turns in run.model.turns.items() if turns}
    assert stored == expected
