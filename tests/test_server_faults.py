"""A server killed or stopped in the middle of a stream of adds: killed with SIGKILL, it loses
no add it acknowledged (201) and leaves a consistent file; stopped with SIGTERM, it finishes the
requests in flight, refuses new connections (no 5xx) and exits."""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from servers import ServerProcess, rest_server
from store_file import check_file

THREADS = 4
KILLS = 3
SEED = 1207
MAX_ADDS = 100_000  # per thread: the bound of its loop (it stops long before)


@dataclass
class Stream:
    """Client threads adding distinct messages until told to stop or the server goes away."""

    url: str
    tag: str
    stop: threading.Event = field(default_factory=threading.Event)
    acked: set[str] = field(default_factory=set)  # message ids of adds answered 201
    failures: list[str] = field(default_factory=list)  # answers that are neither 201 nor gone
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Stream:
        for n in range(THREADS):
            thread = threading.Thread(target=self._add, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline and not self.failures:
            time.sleep(0.01)
        assert not self.failures, self.failures[:3]
        assert len(self.acked) >= count, "the server acknowledged too few adds"

    def _add(self, thread: int) -> None:
        rng = random.Random(f"{self.tag}-{thread}")
        sent = 0
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for _ in range(MAX_ADDS):
                if self.stop.is_set():
                    return
                size = rng.randint(1, 3)
                ids = [f"{self.tag}-t{thread}-m{sent + i}" for i in range(size)]
                messages = [
                    {"id": mid, "role": rng.choice(("user", "assistant")),
                     "content": f"Message {mid}. It is about the garden. And the piano!"}
                    for mid in ids
                ]  # fmt: skip
                body = {"user_id": f"user{thread % 2}", "session_id": f"{self.tag}-t{thread}",
                        "messages": messages}  # fmt: skip
                sent += size
                try:
                    response = http.post("/v1/messages", json=body)
                except httpx.TransportError:
                    return  # the server is gone: this add is not acknowledged
                with self.lock:
                    if response.status_code == 201:
                        self.acked.update(ids)
                    else:
                        self.failures.append(f"{response.status_code}: {response.text[:300]}")
                        return


def stored_message_ids_of(db: Path) -> list[str]:
    """Every message id of every stored turn, read from the file."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT message_ids FROM records WHERE kind = 'turn'").fetchall()
        return [m for (ids,) in rows for m in json.loads(ids)]
    finally:
        conn.close()


def stored_message_ids(http: httpx.Client) -> list[str]:
    """Every message id of every stored turn, over the API."""
    found: list[str] = []
    for user in ("user0", "user1"):
        cursor = None
        for _ in range(1000):
            params = {"user_id": user, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/records", params=params).json()
            found += [m for r in page["records"] for m in r["message_ids"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    return found


def test_a_killed_server_keeps_every_acknowledged_add(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    db = tmp_path / "killed.db"
    rng = random.Random(SEED)
    acked: set[str] = set()
    for kill in range(KILLS):
        with rest_server(db, env=server_env) as server:
            stream = Stream(server.url, f"k{kill}").start()
            stream.wait_for(20 + rng.randrange(40))
            time.sleep(rng.uniform(0, 0.2))
            server.stop(signal.SIGKILL)  # mid-stream: THREADS adds are in flight
            stream.join()
            assert not stream.failures, stream.failures[:3]
            acked |= stream.acked
        check_file(db)  # as the killed process left it (a fresh connection recovers the WAL)
    with rest_server(db, env=server_env) as server, server.client() as http:
        stored = stored_message_ids(http)
        assert len(stored) == len(set(stored)), "a message was stored twice"
        assert acked <= set(stored), sorted(acked - set(stored))[:5]
        counts = check_file(db)
        assert counts["turn"] == len(stored)
        # an acknowledged message again (the first acked of a user0 thread; under load the
        # first message of thread 0 may be the one the kill cut off)
        known = min(m for m in acked if int(m.split("-t")[1].split("-m")[0]) % 2 == 0)
        again = http.post(
            "/v1/messages",
            json={
                "user_id": "user0",
                "session_id": known.rsplit("-m", 1)[0],
                "messages": [{"id": known, "role": "user", "content": "x"}],
            },
        )
        assert again.status_code == 201  # an acknowledged message again: nothing new stored
        assert check_file(db) == counts
    assert "Traceback" not in server.log, server.log


def connect_refused(server: ServerProcess, timeout: float = 10.0) -> bool:
    """Whether new connections are refused (polls until they are, up to ``timeout``)."""
    url = httpx.URL(server.url)
    assert url.port is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((url.host, url.port), timeout=1):
                pass
        except ConnectionRefusedError:
            return True
        time.sleep(0.01)
    return False


def held_add(
    url: str,
    messages: list[dict],
    started: threading.Event,
    release: threading.Event,
    result: list[httpx.Response | Exception],
) -> None:
    """An add whose body arrives in two parts, the second only once ``release`` is set: a
    request that is in flight for as long as the test wants."""
    body = httpx.Request("POST", url, json={"user_id": "user0", "session_id": "held",
                                            "messages": messages}).content  # fmt: skip

    def parts() -> Iterator[bytes]:
        yield body[:100]
        started.set()
        release.wait(30)
        yield body[100:]

    try:
        with httpx.Client(timeout=60) as http:
            result.append(http.post(url, content=parts(),
                                    headers={"content-type": "application/json"}))  # fmt: skip
    except Exception as exc:
        result.append(exc)


# The add that a SIGTERM finds in flight (sigterm_with_a_request_in_flight).
HELD = [{"id": f"held-m{i}", "role": "user", "content": f"held message {i}"} for i in range(50)]


def sigterm_with_a_request_in_flight(server: ServerProcess, held: list[dict]) -> httpx.Response:
    """SIGTERM while an add of ``held`` is in flight: new connections are refused at once, the
    server waits for the add, which is answered; its answer."""
    started, release = threading.Event(), threading.Event()
    result: list[httpx.Response | Exception] = []
    holder = threading.Thread(
        target=held_add, args=(f"{server.url}/v1/messages", held, started, release, result)
    )
    holder.start()
    assert started.wait(30)
    time.sleep(0.2)  # the first part has reached the server
    server.proc.send_signal(signal.SIGTERM)
    assert connect_refused(server), "new connections were still accepted"
    assert server.proc.poll() is None, "the server exited with a request in flight"
    release.set()
    holder.join(60)
    (response,) = result
    assert isinstance(response, httpx.Response), response
    return response


def test_sigterm_finishes_the_requests_in_flight_then_refuses_new_ones(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    db = tmp_path / "stopped.db"
    with rest_server(db, env=server_env) as server:
        stream = Stream(server.url, "term").start()
        stream.wait_for(30)
        response = sigterm_with_a_request_in_flight(server, HELD)
        stream.join()
        code = server.stop(timeout=30)
    assert code in (0, -signal.SIGTERM), server.log
    assert not stream.failures, stream.failures[:3]  # no 5xx: answered, or refused
    assert response.status_code == 201, response.text
    assert "Traceback" not in server.log, server.log
    with rest_server(db, env=server_env) as again, again.client() as http:
        stored = set(stored_message_ids(http))
        assert stream.acked | {m["id"] for m in HELD} <= stored
    check_file(db)


def test_an_add_answered_504_is_stored_whole_and_a_retry_stores_nothing_twice(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    """The deadline answers the client; the write it cut off still commits as one transaction."""
    env = {**server_env, "ENGRAM_REQUEST_TIMEOUT": "0.05"}
    messages = [{"id": f"slow-m{i}", "role": ("user", "assistant")[i % 2],
                 "content": f"Message {i}. It is about the garden. And the piano!"}
                for i in range(1000)]  # fmt: skip
    body = {"user_id": "slow", "session_id": "s", "messages": messages}
    with rest_server(tmp_path / "slow.db", env=env) as server, server.client() as http:
        late = http.post("/v1/messages", json=body)
        assert late.status_code == 504, late.text
        assert late.json()["error"]["type"] == "Timeout"
        counts: dict[str, int] = {}
        for _ in range(300):  # the add goes on after its answer: wait until it has committed
            stats = http.get("/v1/stats", params={"user_id": "slow"})
            if stats.status_code == 200:
                counts = stats.json()["records"]
                if counts.get("turn") == 1000:
                    break
            time.sleep(0.1)
        assert counts.get("turn") == 1000, counts
        retry = http.post("/v1/messages", json=body)
        assert retry.status_code in (201, 504), retry.text
        time.sleep(0.5)
        assert http.get("/v1/stats", params={"user_id": "slow"}).json()["records"] == counts
    assert set(stored_message_ids_of(tmp_path / "slow.db")) == {m["id"] for m in messages}
    check_file(tmp_path / "slow.db")
