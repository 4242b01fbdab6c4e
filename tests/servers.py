"""Real server processes for the server tests: ``engram serve`` (and ``engram mcp --http``) run
as subprocesses on a free loopback port, with bounded waits. Not mocks: every test that uses
these talks HTTP to a separate Python process."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "RuleStub",
    "ServerProcess",
    "engram_env",
    "list_all",
    "rest_server",
    "rule_stub",
    "run_engram",
    "start_server",
]

_SERVING = re.compile(r"serving (http://\S+)")
START_TIMEOUT = 60.0
STUB = Path(__file__).with_name("llm_stub_server.py")


def engram_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``engram``: no ENGRAM_* variable of the caller leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_engram(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``engram ARGS`` as a child process, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "engram.cli.main", *args], capture_output=True, text=True,
        env=env or engram_env(), timeout=timeout, input=input, check=False,
    )  # fmt: skip


@dataclass
class ServerProcess:
    """A running ``engram serve``: its base URL, process and what it printed on stderr."""

    url: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None  # the thread reading its stderr (it closes it)

    def client(self, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.reader is not None:
            self.reader.join(10)
        return self.proc.returncode

    @property
    def log(self) -> str:
        return "".join(self.lines)


def _pump(
    proc: subprocess.Popen[str], lines: list[str], found: list[str], ready: threading.Event
) -> None:
    assert proc.stderr is not None
    with proc.stderr:  # closed at the end, or the pipe's file is left to the garbage collector
        for line in proc.stderr:
            lines.append(line)
            match = _SERVING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
    ready.set()  # the process ended


def start_server(args: Sequence[str], env: dict[str, str] | None = None) -> ServerProcess:
    """Start ``engram ARGS`` (a command that prints 'serving http://...') and wait until it
    answers ``/readyz`` (at the root of the printed URL, which for ``engram mcp --http`` is its
    ``/mcp`` endpoint); raises RuntimeError with its output if it does not."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram.cli.main", *args], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, env=env or engram_env(),
    )  # fmt: skip
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=_pump, args=(proc, lines, found, ready), daemon=True)
    reader.start()
    ready.wait(START_TIMEOUT)
    if not found:
        proc.kill()
        proc.wait(10)
        reader.join(10)
        raise RuntimeError("server did not start:\n" + "".join(lines))
    server = ServerProcess(found[0], proc, lines, reader)
    ready_url = httpx.URL(server.url).join("/readyz")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if httpx.get(ready_url, timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError("server never became ready:\n" + server.log)


@contextmanager
def rest_server(
    db: Path | str, *extra: str, embedder: str = "hash", env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """``engram --db DB --embedder EMBEDDER serve --port 0 EXTRA...`` for the with-block."""
    server = start_server(
        ["--db", str(db), "--embedder", embedder, "serve", "--port", "0", *extra], env
    )
    try:
        yield server
    finally:
        server.stop()


def list_all(http: httpx.Client, user: str, **params: object) -> list[dict[str, Any]]:
    """Every record ``GET /v1/records`` lists for ``user``, page after page by its cursors."""
    records: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):  # bounded: a cursor that never ends fails the test
        query = {"user_id": user, "limit": 1000, **params}
        if cursor is not None:
            query["cursor"] = cursor
        page = http.get("/v1/records", params=query)
        assert page.status_code == 200, page.text
        records += page.json()["records"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return records
    raise AssertionError("list never ended")


@dataclass
class RuleStub:
    """A running ``tests/llm_stub_server.py --rule``: an OpenAI-compatible endpoint answering
    as tests/fact_model.RuleModel does."""

    proc: subprocess.Popen[str]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self, **extra: str) -> dict[str, str]:
        """:func:`engram_env` with ``ENGRAM_LLM_*`` pointing here (one attempt, short timeout)."""
        return engram_env(
            ENGRAM_LLM_BASE_URL=self.base_url, ENGRAM_LLM_MODEL="rule-model",
            ENGRAM_LLM_API_KEY="sk-stub-SECRET", ENGRAM_LLM_MAX_ATTEMPTS="1",
            ENGRAM_LLM_TIMEOUT="10", **extra,
        )  # fmt: skip

    def down(self, down: bool = True) -> None:
        """Answer 503 to every completion (``down``), or answer again."""
        control = f"http://127.0.0.1:{self.port}/_control/down"
        httpx.post(control, json={"down": down}, timeout=5).raise_for_status()

    def completions(self) -> int:
        answer = httpx.get(f"http://127.0.0.1:{self.port}/_control/count", timeout=5)
        count: int = answer.raise_for_status().json()["completions"]
        return count


@contextmanager
def rule_stub() -> Iterator[RuleStub]:
    """The rule-model stub LLM as a process of its own, for the with-block."""
    proc = subprocess.Popen(
        [sys.executable, str(STUB), "--rule"], stdout=subprocess.PIPE, text=True, bufsize=1,
        env=engram_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"the stub LLM did not start: {line!r}")
        yield RuleStub(proc, int(line.split()[1]))
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
