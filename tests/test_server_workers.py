"""``engram serve --workers N``: several server processes on one port and one store. Real
processes throughout: the supervisor and its workers are children of the test, the store a
SQLite file or the test PostgreSQL server, the clients speak HTTP."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from servers import ServerProcess, engram_env, rest_server, run_engram
from store_file import check_file
from test_server_faults import (
    HELD,
    Stream,
    sigterm_with_a_request_in_flight,
    stored_message_ids,
)

WORKERS = 2


def workers_of(server: ServerProcess) -> list[int]:
    """The pids of the server's worker processes (its children that run the spawned code)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.proc.pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_for_workers(server: ServerProcess, count: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = workers_of(server)
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers, found {workers_of(server)}:\n{server.log}")


def searches_on_fresh_connections(url: str, user: str, count: int) -> list[int]:
    """``count`` searches, each on a new connection (the kernel hands each to a worker)."""
    sizes = []
    for n in range(count):
        with httpx.Client(base_url=url, timeout=30) as http:
            found = http.post("/v1/search", json={"user_id": user, "query": f"garden piano {n}"})
            assert found.status_code == 200, found.text
            sizes.append(len(found.json()["hits"]))
    return sizes


def test_workers_share_one_port_and_one_store(tmp_path: Path, server_env: dict[str, str]) -> None:
    db = tmp_path / "w.db"
    with rest_server(db, "--workers", str(WORKERS), env=server_env) as server:
        assert f"{WORKERS} workers" in server.log
        pids = wait_for_workers(server, WORKERS)
        before = {pid: cpu_ticks(pid) for pid in pids}
        stream = Stream(server.url, "w").start()  # 4 threads, a connection each
        stream.wait_for(40)
        stream.join()
        # what one worker wrote, every worker reads (their caches follow the file)
        for sizes in (searches_on_fresh_connections(server.url, user, 12)
                      for user in ("user0", "user1")):  # fmt: skip
            assert all(size > 0 for size in sizes)
        after = {pid: cpu_ticks(pid) for pid in pids}
        assert all(after[pid] > before[pid] for pid in pids), (before, after)
        with server.client() as http:
            stored = stored_message_ids(http)
        assert len(stored) == len(set(stored)), "a message was stored twice"
        assert stream.acked <= set(stored)
    assert server.proc.returncode == 0, server.log
    assert server.log.count("model calls:") == WORKERS  # each worker closed its store itself
    assert "Traceback" not in server.log, server.log
    check_file(db)


class Adder:
    """Threads adding distinct messages, each on a new connection per add, until stopped: an
    add cut off by a dying worker is not acknowledged, and the next goes to a live one."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.stop = url, threading.Event()
        self.acked: set[str] = set()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self, n: int) -> None:
        for k in range(100_000):  # bounded; stopped long before
            if self.stop.is_set():
                return
            mid = f"a{n}-m{k}"
            message = {"id": mid, "role": "user", "content": f"Note {mid}: the garden."}
            body = {"user_id": f"user{n % 2}", "session_id": f"a{n}", "messages": [message]}
            try:
                answer = httpx.post(f"{self.url}/v1/messages", json=body, timeout=30)
            except httpx.TransportError:
                continue  # not acknowledged
            with self.lock:
                if answer.status_code == 201:
                    self.acked.add(mid)
                else:
                    self.failures.append(f"{answer.status_code}: {answer.text[:300]}")

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= count, f"only {len(self.acked)} adds acknowledged"

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_a_killed_worker_is_replaced_and_no_acknowledged_add_is_lost(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    db = tmp_path / "killed.db"
    with rest_server(db, "--workers", str(WORKERS), env=server_env) as server:
        victim = wait_for_workers(server, WORKERS)[0]
        adder = Adder(server.url)
        try:
            adder.wait_for(20)
            os.kill(victim, signal.SIGKILL)
            adder.wait_for(len(adder.acked) + 40)  # the other worker goes on serving
        finally:
            adder.join()
        assert not adder.failures, adder.failures[:3]
        replaced = wait_for_workers(server, WORKERS)
        assert victim not in replaced
        assert re.search(r"worker \d exited with code -9", server.log), server.log
        with server.client() as http:
            assert http.get("/readyz").status_code == 200
            stored = stored_message_ids(http)
        assert adder.acked <= set(stored), sorted(adder.acked - set(stored))[:5]
        assert len(stored) == len(set(stored))
    check_file(db)


def test_sigterm_stops_every_worker_after_its_requests(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    db = tmp_path / "stop.db"
    with rest_server(db, "--workers", str(WORKERS), env=server_env) as server:
        pids = wait_for_workers(server, WORKERS)
        stream = Stream(server.url, "s").start()
        stream.wait_for(20)
        stream.join()
        response = sigterm_with_a_request_in_flight(server, HELD)
        assert server.proc.wait(60) == 0, server.log
    assert response.status_code == 201, response.text
    assert not stream.failures, stream.failures[:3]
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert server.log.count("model calls:") == WORKERS, server.log
    assert "Traceback" not in server.log, server.log
    with rest_server(db, env=server_env) as again, again.client() as http:
        assert stream.acked | {m["id"] for m in HELD} <= set(stored_message_ids(http))


def test_a_store_that_cannot_open_stops_before_any_worker_starts(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-database.db"
    bad.write_bytes(b"this is not SQLite" * 100)
    done = run_engram("--db", str(bad), "--embedder", "hash", "serve", "--port", "0",
                      "--workers", "2", timeout=60)  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not-a-database.db" in lines[0], done.stderr
    assert bad.read_bytes() == b"this is not SQLite" * 100


@pytest.mark.parametrize("workers", [1, WORKERS])
def test_serve_on_postgres(pg_url: str, workers: int) -> None:
    with rest_server(pg_url, "--workers", str(workers), env=engram_env()) as server:
        with server.client() as http:
            added = http.post("/v1/messages", json={
                "user_id": "alice", "session_id": "s1",
                "messages": [{"role": "user", "content": "I moved to Lyon in 2021."},
                             {"role": "assistant", "content": "Lyon is a lovely city."}],
            })  # fmt: skip
            assert added.status_code == 201, added.text
        found = [
            http_search.json()
            for http_search in (
                httpx.post(f"{server.url}/v1/search", timeout=30,
                           json={"user_id": "alice", "query": "where did I move?"})
                for _ in range(6)
            )
        ]  # fmt: skip
        for answer in found:
            assert answer["hits"][0]["record"]["text"] == "I moved to Lyon in 2021."
        assert "postgresql://" in server.log
    assert server.proc.returncode == 0, server.log
