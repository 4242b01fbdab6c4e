"""OpenAICompatibleLLM over real HTTP against a misbehaving OpenAI-compatible server process
(tests/llm_stub_server.py): retries, the json_schema -> json_object fallback, timeouts, error
statuses, bad answers and usage accounting."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field

from engram.errors import LLMOutputError, LLMUnavailableError
from engram.llm import ChatMessage, OpenAICompatibleLLM, UsageMeter

STUB = Path(__file__).with_name("llm_stub_server.py")
KEY = "sk-test-SECRET-4242"
ASK = [ChatMessage("system", "Extract facts."), ChatMessage("user", "I moved to Lyon in 2021.")]


class Fact(BaseModel):
    subject: str
    year: int = Field(ge=1900, le=2100)
    kind: Literal["move", "job", "other"]


class Facts(BaseModel):
    facts: list[Fact]


GOOD = json.dumps({"facts": [{"subject": "Lyon", "year": 2021, "kind": "move"}]})


class Stub:
    """The stub server process and its control endpoints."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._control = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)

    def script(self, *entries: dict[str, Any], reject_json_schema: bool = False) -> None:
        spec = {"entries": list(entries), "reject_json_schema": reject_json_schema}
        self._control.post("/_control/script", json=spec).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        answer = self._control.get("/_control/requests")
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()
        return result

    def forms(self) -> list[str]:
        return [r["body"]["response_format"]["type"] for r in self.requests()]

    def close(self) -> None:
        self._control.close()
        self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    proc = subprocess.Popen(
        [sys.executable, str(STUB)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        proc.kill()
        pytest.fail(f"the stub server did not start: {line!r}")
    server = Stub(proc, int(line.split()[1]))
    yield server
    server.close()


def client(stub: Stub, **options: Any) -> OpenAICompatibleLLM:
    settings: dict[str, Any] = {"api_key": KEY, "timeout": 5.0, "backoff": 0.01}
    return OpenAICompatibleLLM(stub.base_url, "stub-model", **{**settings, **options})


def test_valid_answer_and_the_request_it_came_from(stub: Stub) -> None:
    stub.script({"content": GOOD})
    meter = UsageMeter()
    with client(stub) as llm:
        facts = llm.complete_json(ASK, Facts, meter=meter, max_tokens=99)
    assert facts == Facts(facts=[Fact(subject="Lyon", year=2021, kind="move")])
    assert meter.total.as_dict() == {
        "calls": 1, "failed": 0, "prompt_tokens": 7, "completion_tokens": 3
    }  # fmt: skip
    (request,) = stub.requests()
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "stub-model"
    assert body["max_tokens"] == 99
    assert body["temperature"] == 0.0
    assert body["messages"] == [{"role": m.role, "content": m.content} for m in ASK]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Facts", "schema": Facts.model_json_schema(), "strict": True},
    }
    assert llm.name == "openai:stub-model"
    assert KEY not in repr(llm)


def test_5xx_and_408_then_ok_are_retried(stub: Stub) -> None:
    stub.script(
        {"status": 503, "message": "loading"}, {"status": 502}, {"status": 408}, {"content": GOOD}
    )
    meter = UsageMeter()
    with client(stub, max_attempts=4) as llm:
        assert llm.complete_json(ASK, Facts, meter=meter).facts[0].year == 2021
    assert len(stub.requests()) == 4
    assert (meter.total.calls, meter.total.failed) == (1, 3)


def test_5xx_until_spent_is_unavailable(stub: Stub) -> None:
    stub.script(*[{"status": 500, "message": "boom"}] * 3)
    meter = UsageMeter()
    with client(stub, max_attempts=3) as llm, pytest.raises(LLMUnavailableError) as caught:
        llm.complete_json(ASK, Facts, meter=meter)
    assert "HTTP 500: boom" in str(caught.value)
    assert "3 attempt(s)" in str(caught.value)
    assert len(stub.requests()) == 3
    assert (meter.total.calls, meter.total.failed) == (0, 3)
    assert llm.response_format == "json_schema"  # a 500 that does not name the form: no fallback


def test_429_honours_retry_after_within_the_bound(stub: Stub) -> None:
    stub.script({"status": 429, "headers": {"Retry-After": "0.4"}}, {"content": GOOD})
    with client(stub) as llm:
        start = time.monotonic()
        llm.complete_json(ASK, Facts)
        assert time.monotonic() - start >= 0.4
    stub.script({"status": 429, "headers": {"Retry-After": "3600"}}, {"content": GOOD})
    with client(stub, max_retry_after=0.2) as llm:
        start = time.monotonic()
        llm.complete_json(ASK, Facts)
        assert time.monotonic() - start < 2.0


def test_auto_falls_back_to_json_object_and_remembers(stub: Stub) -> None:
    stub.script({"content": GOOD}, {"content": GOOD}, reject_json_schema=True)
    meter = UsageMeter()
    with client(stub) as llm:
        assert llm.response_format == "json_schema"
        llm.complete_json(ASK, Facts, meter=meter)
        assert llm.response_format == "json_object"
        llm.complete_json(ASK, Facts, meter=meter)
    first, second, third = (r["body"]["response_format"] for r in stub.requests())
    assert first["type"] == "json_schema"
    assert second == {"type": "json_object", "schema": Facts.model_json_schema()}
    assert third == second  # remembered: no second json_schema try
    assert (meter.total.calls, meter.total.failed) == (2, 1)


def test_fallback_is_shared_by_threads(stub: Stub) -> None:
    stub.script(*[{"content": GOOD}] * 8, reject_json_schema=True)
    errors: list[BaseException] = []
    with client(stub) as llm:
        llm.complete_json(ASK, Facts)  # learns the form

        def ask() -> None:
            try:
                llm.complete_json(ASK, Facts)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(7)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert errors == []
    assert stub.forms() == ["json_schema"] + ["json_object"] * 8


def test_explicit_forms_do_not_fall_back(stub: Stub) -> None:
    stub.script(reject_json_schema=True)
    strict = client(stub, response_format="json_schema", max_attempts=2)
    with strict, pytest.raises(LLMUnavailableError, match="HTTP 500"):
        strict.complete_json(ASK, Facts)
    assert stub.forms() == ["json_schema", "json_schema"]
    stub.script({"content": GOOD})
    with client(stub, response_format="json_object") as llm:
        llm.complete_json(ASK, Facts)
        assert llm.response_format == "json_object"
    assert stub.forms() == ["json_object"]


def test_timeout_is_unavailable_within_bounded_time(stub: Stub) -> None:
    stub.script({"sleep": 3, "content": GOOD}, {"sleep": 3, "content": GOOD})
    meter = UsageMeter()
    with client(stub, timeout=0.3, max_attempts=2) as llm:
        start = time.monotonic()
        with pytest.raises(LLMUnavailableError, match="timeout") as caught:
            llm.complete_json(ASK, Facts, meter=meter)
        assert time.monotonic() - start < 2.0
    assert "2 attempt(s)" in str(caught.value)
    assert (meter.total.calls, meter.total.failed) == (0, 2)


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_4xx_fails_at_once_without_the_key(stub: Stub, status: int) -> None:
    echo = f"Incorrect API key provided: {KEY}" if status == 401 else "model 'x' not found"
    stub.script({"status": status, "message": echo}, {"content": GOOD})
    meter = UsageMeter()
    with client(stub) as llm, pytest.raises(LLMUnavailableError) as caught:
        llm.complete_json(ASK, Facts, meter=meter)
    message = str(caught.value)
    assert f"HTTP {status}" in message
    assert "not retried" in message
    assert KEY not in message
    assert "SECRET" not in message
    assert len(stub.requests()) == 1
    assert (meter.total.calls, meter.total.failed) == (0, 1)


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    meter = UsageMeter()
    llm = OpenAICompatibleLLM(
        f"http://me:hunter2@127.0.0.1:{port}/v1", "m", api_key=KEY, max_attempts=3, backoff=0.01
    )
    start = time.monotonic()
    with llm, pytest.raises(LLMUnavailableError, match="cannot reach") as caught:
        llm.complete_json(ASK, Facts, meter=meter)
    assert time.monotonic() - start < 3.0
    assert KEY not in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(llm)
    assert (meter.total.calls, meter.total.failed) == (0, 3)


def test_dropped_connection_and_bad_envelope_are_retried(stub: Stub) -> None:
    stub.script({"drop": True}, {"raw": "<html>bad gateway</html>"},
                {"body": {"choices": []}}, {"content": GOOD})  # fmt: skip
    meter = UsageMeter()
    with client(stub, max_attempts=4) as llm:
        llm.complete_json(ASK, Facts, meter=meter)
    assert (meter.total.calls, meter.total.failed) == (1, 3)


def test_malformed_json_is_corrected(stub: Stub) -> None:
    stub.script({"content": "Sure! Here are the facts: {facts: ["}, {"content": GOOD})
    meter = UsageMeter()
    with client(stub) as llm:
        assert llm.complete_json(ASK, Facts, meter=meter).facts[0].subject == "Lyon"
    first, second = (r["body"]["messages"] for r in stub.requests())
    assert first == [{"role": m.role, "content": m.content} for m in ASK]
    assert second[:2] == first
    assert second[2] == {"role": "assistant", "content": "Sure! Here are the facts: {facts: ["}
    assert second[3]["role"] == "user"
    assert "not valid JSON" in second[3]["content"]
    assert meter.total.as_dict() == {
        "calls": 2, "failed": 0, "prompt_tokens": 14, "completion_tokens": 6
    }  # fmt: skip


def test_schema_violation_until_spent_is_an_output_error(stub: Stub) -> None:
    bad = json.dumps({"facts": [{"subject": "Lyon", "year": 1066, "kind": "move"}]})
    stub.script(*[{"content": bad}] * 3)
    with client(stub, max_retries=2) as llm, pytest.raises(LLMOutputError) as caught:
        llm.complete_json(ASK, Facts)
    assert "facts.0.year" in str(caught.value)
    assert "3 answer(s)" in str(caught.value)
    requests = stub.requests()
    assert len(requests) == 3
    assert len(requests[-1]["body"]["messages"]) == len(ASK) + 4


def test_fenced_answer_and_missing_usage(stub: Stub) -> None:
    stub.script({"content": f"```json\n{GOOD}\n```", "usage": None})
    meter = UsageMeter()
    with client(stub) as llm:
        assert llm.complete_json(ASK, Facts, meter=meter).facts[0].kind == "move"
    assert meter.total.as_dict() == {
        "calls": 1, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0
    }  # fmt: skip


def test_no_key_sends_no_authorization(stub: Stub) -> None:
    stub.script({"content": GOOD})
    with OpenAICompatibleLLM(stub.base_url, "m", headers={"X-Org": "o"}) as llm:
        llm.complete_json(ASK, Facts)
    (request,) = stub.requests()
    assert "authorization" not in request["headers"]
    assert request["headers"]["x-org"] == "o"
