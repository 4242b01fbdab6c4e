"""Embedding plumbing: the persistent cache (same vectors as its model, each text embedded once
per model, safe to reopen, to share between models and to send to worker processes), and the
length batching of the local model."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engram import (
    ConfigurationError,
    DiskCachedEmbedder,
    EmbeddingError,
    HashEmbedder,
    Memory,
    SqliteStore,
)
from engram.config import Settings, make_embedder
from engram.embed import Vectors


class Counting:
    """A HashEmbedder that records every text it is asked to embed."""

    def __init__(self, dim: int = 64) -> None:
        self.model = HashEmbedder(dim)
        self.seen: list[str] = []

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def dim(self) -> int:
        return self.model.dim

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.seen.extend(texts)
        return self.model.embed_batch(texts)


class WrongShape(Counting):
    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        return np.zeros((len(texts), self.dim + 1), dtype=np.float32)


TEXTS = ["I moved to Lisbon in May.", "My cat is called Miso.", "Pottery on Fridays."]


def test_vectors_equal_the_models_and_each_text_is_embedded_once(tmp_path: Path) -> None:
    inner = Counting()
    cache = DiskCachedEmbedder(inner, tmp_path / "cache.sqlite")
    assert (cache.name, cache.dim) == (inner.name, inner.dim)
    first = cache.embed_batch([*TEXTS, TEXTS[0]])  # a repeated text is embedded once
    assert inner.seen == TEXTS
    np.testing.assert_array_equal(first[:3], HashEmbedder(64).embed_batch(TEXTS))
    np.testing.assert_array_equal(first[3], first[0])
    again = cache.embed_batch([TEXTS[2], "something new", TEXTS[0]])
    assert inner.seen == [*TEXTS, "something new"]
    np.testing.assert_array_equal(again[0], first[2])
    assert (cache.hits, cache.misses) == (1 + 2, 3 + 1)
    assert cache.embed_batch([]).shape == (0, 64)


def test_the_file_outlives_the_object_and_serves_each_model_apart(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.sqlite"  # missing folders are made
    with DiskCachedEmbedder(Counting(64), path) as cache:
        cache.embed_batch(TEXTS)
    reopened, other = Counting(64), Counting(32)
    with DiskCachedEmbedder(reopened, path) as warm, DiskCachedEmbedder(other, path) as second:
        warm.embed_batch(TEXTS)
        assert reopened.seen == []  # all from the file
        assert second.embed_batch(TEXTS).shape == (3, 32)
        assert other.seen == TEXTS  # another dimension is another model
        assert warm.entries() == 6


def test_a_damaged_entry_is_embedded_again(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with DiskCachedEmbedder(Counting(), path) as cache:
        cache.embed_batch(TEXTS)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE vectors SET vector = x'00'")
    inner = Counting()
    with DiskCachedEmbedder(inner, path) as cache:
        np.testing.assert_array_equal(cache.embed_batch(TEXTS), HashEmbedder(64).embed_batch(TEXTS))
        assert inner.seen == TEXTS
        cache.embed_batch(TEXTS)
        assert inner.seen == TEXTS  # repaired in the file


def test_a_model_that_returns_the_wrong_shape_stores_nothing(tmp_path: Path) -> None:
    cache = DiskCachedEmbedder(WrongShape(), tmp_path / "cache.sqlite")
    with pytest.raises(EmbeddingError, match="shape"):
        cache.embed_batch(TEXTS)
    assert cache.entries() == 0


def test_bad_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="file path"):
        DiskCachedEmbedder(Counting(), ":memory:")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(ConfigurationError, match="not an Engram embedding cache"):
        DiskCachedEmbedder(Counting(), other).embed_batch(TEXTS)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ConfigurationError, match="cannot open"):
        DiskCachedEmbedder(Counting(), folder).embed_batch(TEXTS)


def test_pickled_copies_reopen_the_same_file(tmp_path: Path) -> None:
    cache = DiskCachedEmbedder(HashEmbedder(64), tmp_path / "cache.sqlite")
    vectors = cache.embed_batch(TEXTS)  # open connection: still picklable
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.path == cache.path and copy.hits == 0
    np.testing.assert_array_equal(copy.embed_batch(TEXTS), vectors)
    assert (copy.hits, copy.misses) == (3, 0)


def test_memory_with_a_cached_embedder(tmp_path: Path) -> None:
    inner = Counting()
    store_path = tmp_path / "engram.db"
    cache = DiskCachedEmbedder(inner, tmp_path / "cache.sqlite")
    with Memory(store=SqliteStore(store_path), embedder=cache) as mem:
        mem.add([{"role": "user", "content": t} for t in TEXTS], user_id="u", session_id="s")
        first = len(inner.seen)
    assert first > 0
    # the same conversation in a new store: nothing to embed again
    with Memory(store=SqliteStore(tmp_path / "again.db"), embedder=cache) as mem:
        mem.add([{"role": "user", "content": t} for t in TEXTS], user_id="u", session_id="s")
        assert len(inner.seen) == first
        hits = mem.search("Where did I move?", user_id="u", limit=1)
        assert "Lisbon" in hits[0].record.text
    # the store records the model's name: the plain model opens it
    with Memory(store=SqliteStore(store_path), embedder=HashEmbedder(64)) as mem:
        assert mem.stats(user_id="u").embedder == inner.name


def test_settings_and_make_embedder(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    settings = Settings.from_env({"ENGRAM_EMBED_CACHE": path, "ENGRAM_EMBEDDER": "hash:16"})
    assert settings.embed_cache == path
    embedder = make_embedder(settings.embedder, settings)
    assert isinstance(embedder, DiskCachedEmbedder)
    assert (embedder.name, embedder.dim, str(embedder.path)) == ("hash-16", 16, path)
    assert isinstance(make_embedder("hash:16", Settings()), HashEmbedder)


def test_length_batches() -> None:
    from engram.embed.local import length_batches

    lengths = [10, 5000, 30, 10, 800, 10]
    batches = length_batches(lengths, max_batch=3, budget=100, cap=1200)
    assert sorted(i for b in batches for i in b) == list(range(6))  # every position once
    assert batches[0] == [1] and batches[1] == [4]  # longest first, each alone over budget
    assert batches[2:] == [[2, 0, 3], [5]]  # 3 * 30 <= 100; at most 3 per batch
    for batch in length_batches([7] * 200, max_batch=64):
        assert len(batch) <= 64
    assert length_batches([], max_batch=4) == []
    # the cap: two texts past it count as equally long
    assert length_batches([5000, 4000], max_batch=8, budget=2400, cap=1200) == [[0, 1]]


def test_a_cache_file_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with DiskCachedEmbedder(Counting(), path) as cache:
        cache.embed_batch(TEXTS[:1])
    with sqlite3.connect(path) as conn:  # another writer holds the lock
        conn.execute("BEGIN IMMEDIATE")
        busy = DiskCachedEmbedder(Counting(), path, timeout=0.05)
        with pytest.raises(ConfigurationError, match="embedding cache"):
            busy.embed_batch(TEXTS)
        conn.rollback()
