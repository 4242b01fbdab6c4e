"""Embedding from many threads at once: the micro-batching embedder (each caller gets the rows
its texts get alone, concurrent calls share inner calls, errors reach every caller, nobody
waits forever) and the query-vector cache that Memory shares between threads."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import engram
from engram import (
    BatchingEmbedder,
    EmbeddingError,
    HashEmbedder,
    InvalidInputError,
    Memory,
    SentenceTransformerEmbedder,
    SqliteStore,
)
from engram.embed import BatchStats, CachedQueryEmbedder, Vectors, embed_texts

TEXTS = [f"turn {i}: the {w} by the harbour" for i, w in enumerate("abcdefghijklmnopqrst")]


class Recording:
    """A HashEmbedder that records the size of every call, optionally sleeping in each (a
    model whose call costs the same whatever the batch) or failing."""

    def __init__(self, pause: float = 0.0, fail: BaseException | None = None) -> None:
        self.inner = HashEmbedder(32)
        self.pause, self.fail = pause, fail
        self.sizes: list[int] = []
        self.name, self.dim = self.inner.name, self.inner.dim

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.sizes.append(len(texts))
        time.sleep(self.pause)
        if self.fail is not None:
            raise self.fail
        return self.inner.embed_batch(texts)


def at_once(n: int, work: Callable[[int], object], timeout: float = 10.0) -> list[object]:
    """``work(0..n-1)`` in ``n`` threads released together; their results (or exceptions)."""
    start = threading.Barrier(n)

    def run(i: int) -> object:
        start.wait(timeout)
        try:
            return work(i)
        except BaseException as exc:  # returned, to be checked by the test
            return exc

    with ThreadPoolExecutor(n) as pool:
        return [f.result(timeout) for f in [pool.submit(run, i) for i in range(n)]]


def test_each_caller_gets_the_rows_its_texts_get_alone() -> None:
    inner = Recording(pause=0.005)
    batching = BatchingEmbedder(inner, max_batch=16)
    requests = [TEXTS[i % 7 : i % 7 + 1 + i % 4] for i in range(24)]  # 1 to 4 texts each
    found = at_once(24, lambda i: batching.embed_batch(requests[i]))
    for texts, rows in zip(requests, found, strict=True):
        assert isinstance(rows, np.ndarray)
        np.testing.assert_allclose(rows, inner.inner.embed_batch(texts), atol=1e-5)
    stats = batching.stats()
    assert stats.calls == 24 and stats.texts == sum(map(len, requests))
    assert stats.batches == len(inner.sizes) < 24 and stats.largest == max(inner.sizes) <= 16
    assert (batching.name, batching.dim) == (inner.name, inner.dim)
    batching.close()


def test_batching_serves_many_threads_in_few_calls() -> None:
    """Counts, not wall time: 32 threads x 4 calls to a model that takes 20 ms per call."""
    inner = Recording(pause=0.02)
    batching = BatchingEmbedder(inner)
    at_once(32, lambda i: [batching.embed_batch([f"query {i} {j}"]) for j in range(4)])
    stats = batching.stats()
    assert (stats.calls, stats.texts) == (128, 128)
    assert stats.batches == len(inner.sizes) <= 40
    assert stats.largest > 1 and sum(inner.sizes) == 128
    batching.close()


def test_no_batch_goes_over_max_batch_but_a_bigger_request_is_served_alone() -> None:
    inner = Recording(pause=0.002)
    batching = BatchingEmbedder(inner, max_batch=5, max_wait=0.01)
    big = [f"long request {i}" for i in range(12)]
    found = at_once(9, lambda i: batching.embed_batch(big if i == 0 else TEXTS[i : i + 2]))
    np.testing.assert_allclose(found[0], inner.inner.embed_batch(big), atol=1e-5)  # type: ignore[arg-type]
    assert 12 in inner.sizes and all(size <= 5 for size in inner.sizes if size != 12)
    assert batching.stats().largest == 12
    assert batching.embed_batch([]).shape == (0, inner.dim)  # nothing to embed: no call
    assert batching.stats().calls == 9
    batching.close()


class Strict(Exception):
    """An exception whose constructor its args do not fit (it cannot be copied)."""

    def __init__(self, code: int, where: str) -> None:
        super().__init__(f"{code} at {where}")


@pytest.mark.parametrize("error", [ValueError("model exploded"), Strict(7, "layer 3")])
def test_an_error_of_the_model_reaches_every_caller_of_the_batch(error: Exception) -> None:
    inner = Recording(pause=0.01, fail=error)
    batching = BatchingEmbedder(inner, max_wait=0.02)
    found = at_once(6, lambda i: batching.embed_batch([f"text {i}"]))
    assert all(type(e) is type(error) and str(e) == str(error) for e in found), found
    assert batching.stats().calls == 6
    inner.fail = None  # the worker lives on
    assert batching.embed_batch(["fine"]).shape == (1, inner.dim)
    with pytest.raises(EmbeddingError, match="failed"):  # what Memory sees: embed_texts
        inner.fail = RuntimeError("again")
        embed_texts(batching, ["x"])
    batching.close()


class Crash(BaseException):
    """Not an Exception: it ends the worker thread."""


def test_callers_of_a_worker_that_dies_get_an_embedding_error() -> None:
    inner = Recording(pause=0.01, fail=Crash("out of memory in the worker"))
    batching = BatchingEmbedder(inner, max_wait=0.02)
    found = at_once(4, lambda i: batching.embed_batch([f"text {i}"]))
    assert all(isinstance(e, EmbeddingError) and "stopped" in str(e) for e in found), found
    inner.fail = None
    assert batching.embed_batch(["a new worker"]).shape == (1, inner.dim)
    batching.close()


def test_callers_of_a_worker_that_vanished_do_not_wait_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(BatchingEmbedder, "_run", lambda self: None)  # ends, answers nobody
    batching = BatchingEmbedder(HashEmbedder())
    began = time.monotonic()
    with pytest.raises(EmbeddingError, match="stopped"):
        batching.embed_batch(["hello"])
    assert time.monotonic() - began < 2.0


def test_the_worker_starts_on_first_use_and_close_serves_what_is_queued_first() -> None:
    inner = Recording(pause=0.05)
    batching = BatchingEmbedder(inner, max_batch=1)  # one request per call: a queue forms
    assert batching._worker is None
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(batching.embed_batch([f"t{i}"])))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while not inner.sizes and time.monotonic() < deadline:  # the first call is running
        time.sleep(0.005)
    worker = batching._worker
    assert worker is not None and worker.name == "engram-embed-batching" and worker.daemon
    time.sleep(0.02)  # the other three queued behind the first
    batching.close()
    for t in threads:
        t.join(5)
    assert len(results) == 4 and not worker.is_alive()
    batching.close()  # idempotent
    with pytest.raises(EmbeddingError, match="closed"):
        batching.embed_batch(["too late"])


def test_bad_parameters_are_rejected() -> None:
    for kwargs in ({"max_batch": 0}, {"max_batch": True}, {"max_wait": -1}, {"max_wait": "1"}):
        with pytest.raises(InvalidInputError):
            BatchingEmbedder(HashEmbedder(), **kwargs)  # type: ignore[arg-type]
    assert "BatchingEmbedder" in engram.__all__
    assert isinstance(BatchingEmbedder(HashEmbedder()), engram.Embedder)
    assert BatchStats() == BatchStats(0, 0, 0, 0)


def test_memory_searching_and_writing_through_a_batching_embedder(tmp_path: Path) -> None:
    """Threads adding and searching through one BatchingEmbedder find what the same calls
    find one by one without it."""
    batching = BatchingEmbedder(HashEmbedder())
    plain = Memory(store=SqliteStore(tmp_path / "plain.db"), embedder=HashEmbedder())
    batched = Memory(store=SqliteStore(tmp_path / "batched.db"), embedder=batching)
    turns = [{"role": "user", "content": text, "id": f"m{i}"} for i, text in enumerate(TEXTS)]
    for i in range(4):
        plain.add(turns[5 * i : 5 * i + 5], user_id="u", session_id=f"s{i}")
    at_once(4, lambda i: batched.add(turns[5 * i : 5 * i + 5], user_id="u", session_id=f"s{i}"))
    queries = [f"the {w} by the harbour" for w in "aeimq"] * 2
    found = at_once(len(queries), lambda i: batched.search(queries[i], user_id="u", limit=3))
    for query, hits in zip(queries, found, strict=True):
        want = plain.search(query, user_id="u", limit=3, config="semantic")
        got = batched.search(query, user_id="u", limit=3, config="semantic")
        assert [h.record.text for h in got] == [h.record.text for h in want]
        assert isinstance(hits, list) and len(hits) == 3
    assert batching.stats().batches < batching.stats().calls
    plain.close()
    batched.close()
    batching.close()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch between any two steps of a lookup (every microsecond, not 5 ms)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_switching")
def test_the_query_cache_shared_by_threads() -> None:
    """Before its lock, a thread found a query cached, another evicted it, and the first one's
    move_to_end raised KeyError (in about one run of these numbers in two: a race)."""
    inner = HashEmbedder(8)
    cache = CachedQueryEmbedder(inner, size=4)
    found = at_once(8, lambda i: [cache(f"q{(3 * j + i) % 6}") for j in range(1000)])
    for i, vectors in enumerate(found):
        assert isinstance(vectors, list), vectors  # (an exception, returned)
        for j, vec in enumerate(vectors):
            want = embed_texts(inner, [f"q{(3 * j + i) % 6}"])[0]
            np.testing.assert_allclose(vec, want, atol=1e-6)
    assert len(cache._cache) == 4


def test_threads_asking_for_the_model_at_once_load_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first use of the local embedder loads the model: from threads at once, it loaded
    it once per thread, and a thread could find the model set but not yet its dimension."""
    loads: list[str] = []

    class SlowModel:
        def __init__(self, path: str, **options: object) -> None:
            loads.append(path)
            time.sleep(0.05)

        def get_embedding_dimension(self) -> int:
            return 384

    fake = types.ModuleType("sentence_transformers")
    fake.SentenceTransformer = SlowModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    monkeypatch.setitem(sys.modules, "transformers", types.ModuleType("transformers"))
    embedder = SentenceTransformerEmbedder()
    assert at_once(8, lambda i: embedder.dim) == [384] * 8
    assert len(loads) == 1


@pytest.mark.slow
def test_the_bundled_model_batched_gives_the_vectors_it_gives_alone(
    bundled_embedder: SentenceTransformerEmbedder,
) -> None:
    """Texts of different lengths batched together are padded to the longest; attention masks
    keep padding out of the result, but a batch's matrix shapes can move the last float bits:
    hence a tolerance (1e-5; measured 0.0 on the bundled model)."""
    texts = [f"Caroline: the {w} on day {i} was " + "really " * (i % 9) + "great."
             for i, w in enumerate(["museum", "beach", "park", "gym", "lake"] * 4)]  # fmt: skip
    alone = np.vstack([bundled_embedder.embed_batch([t]) for t in texts])
    batching = BatchingEmbedder(bundled_embedder, max_wait=0.05)
    found = at_once(len(texts), lambda i: batching.embed_batch([texts[i]]))
    np.testing.assert_allclose(np.vstack(found), alone, atol=1e-5)  # type: ignore[arg-type]
    assert batching.stats().batches < len(texts)
    batching.close()
