"""The LLM layer over REST, against real processes: ``engram serve`` with ``ENGRAM_LLM_BASE_URL``
pointing at an OpenAI-compatible stub process that answers as tests/fact_model.RuleModel does.
Facts from a synchronous add, listed and searched; a move that supersedes, read as of before
and after; answers that cite; the queue, processed on request and by the worker thread; usage
and pending jobs in the stats; an LLM that is down (the turns are stored, the job waits, an
answer is a 503 with the one error body); a clean stop of the worker on SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import RuleStub, ServerProcess, list_all, rest_server, rule_stub

WAIT = 15.0  # seconds, at most, for the worker thread to pick a job up


@pytest.fixture(scope="module")
def stub() -> Iterator[RuleStub]:
    with rule_stub() as running:
        yield running


@pytest.fixture(scope="module")
def server(stub: RuleStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the stub's LLM and no worker thread: jobs wait for /v1/jobs/process."""
    db = tmp_path_factory.mktemp("llm") / "engram.db"
    with rest_server(db, env=stub.env(ENGRAM_WORKER_INTERVAL="0")) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def say(http: httpx.Client, user: str, session: str, date: str, *texts: str, **extra: Any) -> list:
    messages = [{"role": "user", "content": t} for t in texts]
    body = {"user_id": user, "session_id": session, "session_date": date, "messages": messages}
    response = http.post("/v1/messages", json={**body, **extra})
    assert response.status_code == 201, response.text
    records: list = response.json()["records"]
    return records


def facts(http: httpx.Client, user: str, **params: Any) -> dict[str, dict]:
    return {r["text"]: r for r in list_all(http, user, kind="fact", **params)}


def post(http: httpx.Client, path: str, **body: Any) -> Any:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def stats(http: httpx.Client, user: str) -> Any:
    response = http.get("/v1/stats", params={"user_id": user})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_sync_add_extracts_facts_that_are_listed_and_found(http: httpx.Client) -> None:
    turns = say(http, "ana", "s1", "2023-05-08", "Hi!", "I live in Paris. I love sailing.",
                extract="sync")  # fmt: skip
    found = facts(http, "ana")
    assert sorted(found) == ["user likes sailing", "user lives in Paris"]
    for fact in found.values():
        assert fact["kind"] == "fact" and fact["provenance"] == [turns[1]["id"]]
        assert fact["expired_at"] is None and fact["superseded_by"] is None
        assert fact["user_id"] == "ana"
    assert [r["id"] for r in list_all(http, "ana")] == [t["id"] for t in turns]  # turns as said
    hits = post(http, "/v1/search/facts", user_id="ana", query="Paris")["hits"]
    assert hits[0]["record"]["text"] == "user lives in Paris"
    assert all(h["record"]["kind"] == "fact" for h in hits)
    mine = stats(http, "ana")
    assert mine["records"]["fact"] == 2 and mine["pending_jobs"] == mine["failed_jobs"] == 0
    assert mine["llm"]["extract"]["calls"] >= 1 and mine["llm"]["extract"]["prompt_tokens"] > 0
    paris = found["user lives in Paris"]["id"]
    history = http.get(f"/v1/records/{paris}/history", params={"user_id": "ana"}).json()
    assert history["events"][0]["event"] == "ADD" and history["events"][0]["reason"]


def test_a_move_supersedes_and_as_of_reads_follow_it(http: httpx.Client) -> None:
    say(http, "bo", "s1", "2023-01-10", "I live in Paris.")
    say(http, "bo", "s2", "2023-06-01", "Big news: I moved to Berlin yesterday.")
    found = facts(http, "bo")
    paris, berlin = found["user lives in Paris"], found["user lives in Berlin"]
    assert paris["superseded_by"] == berlin["id"] and paris["expired_at"] is not None
    assert paris["valid_to"] == berlin["valid_from"] == "2023-05-31T00:00:00Z"
    assert list(facts(http, "bo", as_of="2023-03-01")) == ["user lives in Paris"]
    assert list(facts(http, "bo", as_of="2023-07-01T00:00:00+02:00")) == ["user lives in Berlin"]
    now = post(http, "/v1/search/facts", user_id="bo", query="lives")["hits"]
    assert [h["record"]["text"] for h in now] == ["user lives in Berlin"]
    then = post(http, "/v1/search/facts", user_id="bo", query="lives", as_of="2023-02-01")["hits"]
    assert [h["record"]["text"] for h in then] == ["user lives in Paris"]
    turns = post(http, "/v1/search", user_id="bo", query="live", as_of="2023-03-01")["hits"]
    assert {h["record"]["session_id"] for h in turns} == {"s1"}  # s2 was not said yet
    events = http.get(f"/v1/records/{paris['id']}/history", params={"user_id": "bo"}).json()
    assert [e["event"] for e in events["events"]] == ["ADD", "SUPERSEDE"]
    assert events["events"][-1]["reason"] == "moved"
    bad = http.get("/v1/records", params={"user_id": "bo", "kind": "fact", "as_of": "soon"})
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "InvalidInputError"


def test_an_answer_cites_the_facts_it_used(http: httpx.Client) -> None:
    say(http, "cy", "s1", "2023-01-10", "I live in Paris.")
    say(http, "cy", "s2", "2023-06-01", "I moved to Berlin.")
    ask = {"user_id": "cy", "question": "Where does the user live?"}
    answer = post(http, "/v1/answer", **ask, question_date="2023-07-01")
    assert answer["text"] == "user lives in Berlin"
    assert [r["text"] for r in answer["citations"]] == ["user lives in Berlin"]
    assert answer["citations"][0]["user_id"] == "cy"
    assert {r["kind"] for r in answer["context"]} >= {"fact", "turn"}
    assert answer["usage"]["calls"] == 1 and answer["usage"]["prompt_tokens"] > 0
    earlier = post(http, "/v1/answer", **ask, question_date="2023-03-01", budget=500, limit=5)
    assert earlier["text"] == "user lives in Paris"
    assert stats(http, "cy")["llm"]["answer"]["calls"] == 2
    for bad in ({"budget": 5}, {"limit": 0}, {"question": " "}, {"question_date": "x"}):
        response = http.post("/v1/answer", json={**ask, **bad})
        assert response.status_code == 422, response.text


def test_background_jobs_wait_for_jobs_process(http: httpx.Client) -> None:
    say(http, "di", "s1", "2023-05-08", "I love chess.", extract="background")
    assert facts(http, "di") == {}
    assert stats(http, "di")["pending_jobs"] == 1
    report = post(http, "/v1/jobs/process", user_id="di", limit=10)
    assert (report["done"], report["failed"]) == (1, 0)
    assert report["jobs"][0]["actions"] == {"ADD": 1} and report["jobs"][0]["error"] is None
    assert report["usage"]["calls"] == report["jobs"][0]["usage"]["calls"] >= 1
    assert list(facts(http, "di")) == ["user likes chess"]
    assert stats(http, "di")["pending_jobs"] == 0
    say(http, "di", "s2", "2023-05-09", "I love go.", extract="background")
    say(http, "di", "s3", "2023-05-09", "Nothing to see.", extract="off")
    assert stats(http, "di")["pending_jobs"] == 1
    assert post(http, "/v1/jobs/process")["done"] == 1  # the open mode: every user's jobs
    assert post(http, "/v1/jobs/process")["jobs"] == []
    assert http.post("/v1/jobs/process", json={"limit": 0}).status_code == 422


def test_the_llm_down_keeps_the_turns_and_the_job_and_answers_503(
    http: httpx.Client, stub: RuleStub
) -> None:
    stub.down()
    try:
        turns = say(http, "ed", "s1", "2023-05-08", "I love opera.", extract="sync")
        assert [r["id"] for r in list_all(http, "ed")] == [turns[0]["id"]]
        assert facts(http, "ed") == {}
        mine = stats(http, "ed")
        assert (mine["pending_jobs"], mine["failed_jobs"]) == (1, 1)
        answer = http.post("/v1/answer", json={"user_id": "ed", "question": "what do I love?"})
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert list(answer.json()) == ["error"]
        error = answer.json()["error"]
        assert error["type"] == "LLMUnavailableError" and "503" in error["message"]
        assert str(stub.port) not in answer.text and "SECRET" not in answer.text
        assert post(http, "/v1/jobs/process", user_id="ed")["jobs"] == []  # not before its time
    finally:
        stub.down(False)
    assert stats(http, "ed")["pending_jobs"] == 1  # it waits for its retry


def test_readyz_names_the_model_without_secrets(http: httpx.Client) -> None:
    ready = http.get("/readyz")
    assert ready.json() == {"status": "ready", "llm": "openai:rule-model"}
    assert "SECRET" not in http.get("/openapi.json").text


def test_the_worker_thread_processes_jobs_and_stops_cleanly(stub: RuleStub, tmp_path: Path) -> None:
    env = stub.env(ENGRAM_WORKER_INTERVAL="0.1", ENGRAM_EXTRACT_DEFAULT="background")
    with rest_server(tmp_path / "worker.db", env=env) as server, server.client() as http:
        say(http, "fa", "s1", "2023-05-08", "I love jazz.")  # background: the server's default
        deadline = time.monotonic() + WAIT
        while not facts(http, "fa") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(facts(http, "fa")) == ["user likes jazz"]
        assert stats(http, "fa")["pending_jobs"] == 0
        for i in range(5):  # jobs queued while it stops: each is done or still queued, whole
            say(http, "fa", f"t{i}", "2023-05-09", f"I love topic{'abcde'[i]}.")
    assert server.proc.returncode == 0, server.log
    assert "Traceback" not in server.log
    quiet = stub.env(ENGRAM_WORKER_INTERVAL="0")
    with rest_server(tmp_path / "worker.db", env=quiet) as again, again.client() as http:
        left = stats(http, "fa")["pending_jobs"]
        assert left + len(facts(http, "fa")) == 6  # every job: done (a fact) or queued
        post(http, "/v1/jobs/process", user_id="fa")
        assert len(facts(http, "fa")) == 6
