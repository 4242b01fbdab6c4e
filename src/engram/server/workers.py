"""``engram serve --workers N``: N server processes answering on one listening socket.

One Python process runs one request's Python code at a time (the interpreter lock): a search
is mostly Python (fusion, factors, SQLite calls, JSON), so one process tops out near one core
however many threads it has. N processes, each with its own model, caches and store
connections, use N cores; the kernel hands each new connection to whichever process accepts
it first. The database keeps them consistent: SQLite's file locks and per-user generation
counters (every cache is checked against them), or PostgreSQL.

The supervisor (this process) binds the socket, checks that the store opens, starts the
workers (``spawn``: no forked copy of a model or of a thread), waits until each has loaded its
model, and then says "serving". A worker that dies is started again; one that dies at startup
stops the server with its error. SIGTERM or SIGINT is passed on as SIGTERM: each worker finishes
its requests in flight and closes its store (:func:`engram.server.run.run_uvicorn`), and the
supervisor exits 0 once all have exited cleanly.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from typing import Any

from engram import ConfigurationError, EngramError
from engram.server.settings import ServerSettings

__all__ = ["supervise"]

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
FAST_DEATHS = 5  # workers dying within STABLE seconds of their start, in a row, stop the server
STABLE = 30.0


def supervise(settings: ServerSettings, sock: socket.socket, describe: str) -> None:
    """Run ``settings.workers`` workers on ``sock`` until SIGTERM or SIGINT; ``describe`` is
    the "serving ..." line's tail. Raises ConfigurationError if a worker cannot start, and
    SystemExit(1) if a worker did not stop cleanly."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    pool = _Pool(settings, sock)
    try:
        pool.start_all(stop)
        if not stop.is_set():
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"engram: serving http://{shown}:{port} ({describe}; {settings.workers} "
                  "workers)", file=sys.stderr, flush=True)  # fmt: skip
            pool.watch(stop)
    finally:
        sock.close()  # new connections are refused once the workers close theirs too
        clean = pool.stop_all(settings.shutdown_timeout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not clean:
        raise SystemExit(1)


@dataclass
class _Pool:
    settings: ServerSettings
    sock: socket.socket
    procs: dict[int, SpawnProcess] = field(default_factory=dict)  # slot -> process
    notes: dict[int, Connection] = field(default_factory=dict)  # slot -> its "ready" pipe
    started: dict[int, float] = field(default_factory=dict)
    fast_deaths: int = 0

    def spawn(self, slot: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker_main, name=f"engram-worker-{slot}",
            args=(slot, _portable(self.settings), self.settings.config_path, self.sock, writer),
        )  # fmt: skip
        proc.start()
        writer.close()  # the child's end: EOF here once the child is gone
        if slot in self.notes:
            self.notes[slot].close()
        self.procs[slot], self.notes[slot], self.started[slot] = proc, reader, time.monotonic()

    def start_all(self, stop: threading.Event) -> None:
        """Start every worker and wait until each has its model loaded (or one fails)."""
        for slot in range(self.settings.workers):
            self.spawn(slot)
        waiting = set(self.procs)
        while waiting and not stop.is_set():
            wait([self.notes[s] for s in waiting], timeout=0.5)
            for slot in list(waiting):
                said, error = self._note(slot)
                if said == "ready":
                    waiting.discard(slot)
                elif said == "error":
                    raise ConfigurationError(error)
                elif said == "gone":
                    self.procs[slot].join(5)
                    code = self.procs[slot].exitcode
                    raise ConfigurationError(f"server worker {slot} exited with code {code}")

    def _note(self, slot: int) -> tuple[str | None, str]:
        """What worker ``slot`` said: ("ready", ""), ("error", its startup error), ("gone",
        "") if it ended without a word, (None, "") if nothing yet."""
        pipe = self.notes[slot]
        try:
            if not pipe.poll():
                return None, ""
            error: str | None = pipe.recv()
        except (EOFError, OSError):
            return "gone", ""
        return ("ready", "") if error is None else ("error", error)

    def watch(self, stop: threading.Event) -> None:
        """Until ``stop``: start again every worker that dies."""
        while not stop.is_set():
            wait([p.sentinel for p in self.procs.values()], timeout=0.5)
            for slot, proc in list(self.procs.items()):
                if proc.is_alive() or stop.is_set():
                    continue
                self._died(slot, proc.exitcode)
                stop.wait(RESTART_DELAY)
                if not stop.is_set():
                    self.spawn(slot)

    def _died(self, slot: int, code: int | None) -> None:
        lived = time.monotonic() - self.started[slot]
        self.fast_deaths = self.fast_deaths + 1 if lived < STABLE else 0
        said, error = self._note(slot)
        why = f" ({error})" if said == "error" else ""
        print(f"engram: server worker {slot} exited with code {code} after {lived:.0f} s{why}; "
              "starting it again", file=sys.stderr, flush=True)  # fmt: skip
        if self.fast_deaths >= FAST_DEATHS:
            raise ConfigurationError(
                f"server workers died {self.fast_deaths} times in a row within {STABLE:.0f} s "
                "of their start; stopping (their errors are above)"
            )

    def stop_all(self, timeout: float) -> bool:
        """SIGTERM to every worker; wait for them (their own shutdown takes up to ``timeout``
        for the requests in flight and again for the LLM worker's job); kill what is left.
        Whether every worker exited with 0."""
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + 2 * timeout + 10
        clean = True
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(10)
                clean = False
            clean = clean and proc.exitcode == 0
        return clean


def _portable(settings: ServerSettings) -> dict[str, Any]:
    """The settings as values a spawned process can unpickle (the class that ``load`` makes
    for a config file is not importable there); the child rebuilds them from these alone."""
    values = settings.model_dump()
    key = settings.openai_api_key
    values["openai_api_key"] = key.get_secret_value() if key is not None else None
    return values


def _worker_main(
    slot: int, values: dict[str, Any], config_path: str | None, sock: socket.socket,
    ready: Connection,
) -> None:  # fmt: skip
    """One worker: open the memory, load the model, say so, serve until SIGTERM. The model's
    CPU threads are the cores divided among the workers (unless ``OMP_NUM_THREADS`` says
    otherwise): two workers of two threads each on two cores would fight over them."""
    threads = max(1, (os.cpu_count() or 1) // max(1, int(values.get("workers", 1))))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # read when torch is first imported
    from engram.server.app import create_app, warm_up
    from engram.server.keys import KeyStore
    from engram.server.run import open_memory, run_uvicorn

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor passes a Ctrl-C on as SIGTERM
    try:
        settings = ServerSettings.model_validate(values)
        settings._config_path = config_path
        memory = open_memory(settings)
    except EngramError as exc:
        ready.send(str(exc))
        raise SystemExit(1) from None
    warm_up(memory)
    keys = KeyStore(settings.keys_path) if settings.keys_path else None
    app = create_app(memory, settings, keys=keys)
    ready.send(None)
    ready.close()
    run_uvicorn(app, sock, settings, memory)
