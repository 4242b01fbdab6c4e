"""Micro-batching: many threads embedding a few texts each share one model call.

A server embeds one query per request, from many threads at once. A model does far more work
per call on a batch than on one text, and two threads calling one model at once only fight for
the cores, so :class:`BatchingEmbedder` queues the requests and one worker thread serves them:
it takes the first waiting request, gathers those that arrive within ``max_wait`` seconds (up
to ``max_batch`` texts), calls the inner embedder once on all their texts, and hands each
caller its own rows.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engram.embed.base import Embedder, Vectors, WrappingEmbedder
from engram.errors import EmbeddingError, InvalidInputError

__all__ = ["BatchStats", "BatchingEmbedder"]

_POLL = 0.05  # seconds between a waiting caller's checks that the worker is still alive


@dataclass(frozen=True)
class BatchStats:
    """What a :class:`BatchingEmbedder` did: ``calls`` of ``embed_batch`` served (with
    ``texts`` texts in all) in ``batches`` calls of the inner embedder, the biggest of them
    with ``largest`` texts. ``calls / batches`` is the batching achieved."""

    calls: int = 0
    texts: int = 0
    batches: int = 0
    largest: int = 0


class _Request:
    """One caller's texts, and where the worker puts its rows (or its error)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.rows: Vectors | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def answer(self, rows: Vectors | None = None, error: BaseException | None = None) -> None:
        self.rows, self.error = rows, error
        self.done.set()


_STOP = _Request([])  # put on the queue by close(): the worker ends there


def _own_copy(error: BaseException) -> BaseException:
    """A copy of ``error`` for one caller (its traceback is the caller's own), or ``error``
    itself if it cannot be copied."""
    try:
        twin = copy.copy(error)
    except Exception:  # an exception class whose constructor its args do not fit
        return error
    return twin if type(twin) is type(error) else error


class BatchingEmbedder(WrappingEmbedder):
    """An :class:`~engram.embed.base.Embedder` that gathers concurrent ``embed_batch`` calls
    into batches for ``inner`` (same ``name``, ``dim`` and rows).

    ``max_batch``: texts per inner call (a single request with more is served alone, in one
    call). ``max_wait``: seconds the worker waits for more requests after the first; the
    latency a lone caller pays. An error of ``inner`` is raised in every caller of that batch,
    as the same exception type; if the worker itself dies, its callers get
    :class:`EmbeddingError` (and the next call starts a new worker). The worker is a daemon
    thread started on first use; :meth:`close` stops it. :meth:`stats` counts what happened.
    """

    def __init__(self, inner: Embedder, *, max_batch: int = 64, max_wait: float = 0.002) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidInputError("max_batch must be a positive integer")
        if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or max_wait < 0:
            raise InvalidInputError("max_wait must be a non-negative number of seconds")
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait = float(max_wait)
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the worker's life, the counters
        self._worker: threading.Thread | None = None
        self._closed = False
        self._stats = BatchStats()

    def stats(self) -> BatchStats:
        with self._lock:
            return self._stats

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        request = _Request(list(texts))
        worker = self._submit(request)
        while not request.done.wait(_POLL):
            if not worker.is_alive() and not request.done.is_set():
                raise EmbeddingError(f"the batching worker of {self.name!r} stopped")
        if request.error is not None:
            twin = _own_copy(request.error)
            if twin is request.error:
                raise twin
            raise twin from request.error  # (the cause: the traceback in the worker)
        assert request.rows is not None
        return request.rows

    def _submit(self, request: _Request) -> threading.Thread:
        """Queue a request; the worker that will serve it (started if there is none)."""
        with self._lock:
            if self._closed:
                raise EmbeddingError(f"the batching embedder of {self.name!r} is closed")
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="engram-embed-batching", daemon=True
                )
                self._worker.start()
            self._queue.put(request)
            return self._worker

    def close(self) -> None:
        """Serve the requests queued so far, then stop the worker. Idempotent; later calls of
        :meth:`embed_batch` raise :class:`EmbeddingError`."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
            if worker is not None:
                self._queue.put(_STOP)
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    # -- the worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[_Request] = []
        carried: _Request | None = None  # the request that did not fit in the last batch
        try:
            while True:
                first = carried if carried is not None else self._queue.get()
                carried = None
                if first is _STOP:
                    return
                batch = [first]
                carried, stop = self._gather(batch)
                self._serve(batch)
                batch = []
                if stop:
                    return
        except BaseException as exc:  # the worker dies: nobody may wait for it
            self._die([*batch, *([carried] if carried is not None else [])], exc)

    def _gather(self, batch: list[_Request]) -> tuple[_Request | None, bool]:
        """Add to ``batch`` the requests that come within ``max_wait`` of its first, up to
        ``max_batch`` texts; return the request that did not fit (if one came), and whether
        close() came."""
        size = len(batch[0].texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request is _STOP:
                return None, True
            if size + len(request.texts) > self.max_batch:
                return request, False
            batch.append(request)
            size += len(request.texts)
        return None, False

    def _serve(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        try:
            out = np.asarray(self.inner.embed_batch(texts))
            if out.ndim != 2 or out.shape[0] != len(texts):
                raise EmbeddingError(
                    f"embedder {self.name!r} returned shape {out.shape} for {len(texts)} texts"
                )
        except Exception as exc:  # the callers' error, not the worker's
            for request in batch:
                request.answer(error=exc)
        else:
            start = 0
            for request in batch:
                request.answer(rows=out[start : start + len(request.texts)])
                start += len(request.texts)
        with self._lock:
            s = self._stats
            self._stats = BatchStats(
                s.calls + len(batch), s.texts + len(texts), s.batches + 1,
                max(s.largest, len(texts)),
            )  # fmt: skip

    def _die(self, held: list[_Request], exc: BaseException) -> None:
        """Fail the requests held and queued; the next call starts a new worker."""
        error = EmbeddingError(f"the batching worker of {self.name!r} stopped: {exc!r}")
        error.__cause__ = exc
        with self._lock:
            if self._worker is threading.current_thread():
                self._worker = None
            pending = list(held)
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
        for request in pending:
            if request is not _STOP:
                request.answer(error=error)
