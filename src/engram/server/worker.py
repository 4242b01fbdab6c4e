"""The server's background worker: a thread that processes the fact-extraction queue
(:meth:`~engram.Memory.process_pending`) every ``worker_interval`` seconds while the server runs.

A job is one transaction (its facts, history, usage and the job's deletion commit together), so
stopping between two jobs leaves none half-done; :meth:`Worker.stop` asks the thread to stop
after the job in hand and waits for it. A job whose LLM call outlives the wait is left to its
lease: it commits nothing, and is claimed again once the lease ends.
"""

from __future__ import annotations

import logging
import threading

from engram import EngramError, Memory

__all__ = ["Worker", "start_worker"]

log = logging.getLogger("engram.server")


class Worker:
    """Processes every user's queued jobs, one at a time, until :meth:`stop`."""

    def __init__(self, memory: Memory, interval: float) -> None:
        self.memory = memory
        self.interval = interval
        self.processed = 0  # jobs done or failed since the start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engram-worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = self.drain()
            if not busy:
                self._stop.wait(self.interval)

    def drain(self) -> bool:
        """Process queued jobs until none is ready or a stop is asked for; whether any was."""
        worked = False
        while not self._stop.is_set():
            try:
                report = self.memory.process_pending(limit=1)
            except EngramError as exc:  # the store failing: try again next round
                log.warning("the worker could not process jobs: %s", exc)
                return False
            except Exception:  # a bug: logged, and the server keeps serving
                log.exception("the worker failed")
                return False
            if not report.jobs:
                return worked
            self.processed += 1
            worked = report.failed == 0  # a failed job waits for its retry time: pause
            if not worked:
                return False
        return worked

    def stop(self, timeout: float) -> bool:
        """Stop after the job in hand; whether the thread ended within ``timeout`` seconds."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


def start_worker(memory: Memory, interval: float) -> Worker | None:
    """A started worker, if the memory has an LLM and ``interval`` is not 0 (off)."""
    if memory.llm is None or interval <= 0:
        return None
    return Worker(memory, interval).start()
