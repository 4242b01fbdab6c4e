"""The embedder protocol: implement one batch method, get the rest from the functions here."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from engram.errors import EmbeddingError

__all__ = [
    "CachedQueryEmbedder",
    "Embedder",
    "Vectors",
    "WrappingEmbedder",
    "embed_texts",
    "normalise_rows",
]

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. ``name`` identifies the model (a store remembers it)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Return an ``(len(texts), dim)`` array; it need not be normalised."""
        ...


# An embedder may also have ``distinct_queries`` (a bool) and ``embed_queries(texts) ->
# Vectors``: when ``distinct_queries`` is true, the model wants search queries embedded unlike
# the texts it indexes (a query prompt, e.g. e5's "query: "), and queries go through
# ``embed_queries``. Otherwise queries go through ``embed_batch`` like everything else (and
# through any cache or batcher around it).


def query_route(embedder: object) -> Callable[[Sequence[str]], Vectors] | None:
    """The embedder's ``embed_queries`` if it embeds queries differently, else None."""
    if getattr(embedder, "distinct_queries", False):
        route: Callable[[Sequence[str]], Vectors] = getattr(embedder, "embed_queries")  # noqa: B009
        return route
    return None


class WrappingEmbedder:
    """Base of an embedder that serves another one, ``inner`` (a cache, a batcher): it is the
    same model, so it has the inner embedder's name and dimension."""

    inner: Embedder

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        return self.inner.embed_batch(texts)

    @property
    def distinct_queries(self) -> bool:
        return query_route(self.inner) is not None

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """The inner embedder's query route, past this wrapper's cache or batches (a query's
        vector is not a document's); this wrapper's ``embed_batch`` if it has none."""
        route = query_route(self.inner)
        return route(texts) if route is not None else self.embed_batch(texts)


def embed_texts(
    embedder: Embedder, texts: Sequence[str], batch_size: int = 256, *, queries: bool = False
) -> Vectors:
    """Embed ``texts`` in batches (``queries``: as search queries, through the embedder's
    :func:`query_route` if it has one); check the shape and values; L2-normalise each row."""
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    route = query_route(embedder) if queries else None
    embed = route if route is not None else embedder.embed_batch
    parts = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        try:
            out = np.asarray(embed(chunk), dtype=np.float32)
        except EmbeddingError:
            raise
        except Exception as exc:  # a model or network failure, reported as ours
            raise EmbeddingError(f"embedder {embedder.name!r} failed: {exc}") from exc
        if out.shape != (len(chunk), embedder.dim):
            raise EmbeddingError(
                f"embedder {embedder.name!r} returned shape {out.shape}, "
                f"expected {(len(chunk), embedder.dim)}"
            )
        parts.append(out)
    vectors = np.vstack(parts)
    if not np.isfinite(vectors).all():
        raise EmbeddingError(f"embedder {embedder.name!r} returned non-finite values")
    return normalise_rows(vectors)


def normalise_rows(vectors: npt.NDArray[np.floating[Any]]) -> Vectors:
    """Each row scaled to unit length (an all-zero row stays zero), as float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    normalised: Vectors = (vectors / norms).astype(np.float32)
    return normalised


class CachedQueryEmbedder:
    """Embeds one query at a time and keeps the last ``size`` query vectors.

    Thread-safe: a lock guards the cache, and is not held while a query is embedded (two
    threads that embed the same new query at once both do; the second result is kept)."""

    def __init__(self, embedder: Embedder, size: int = 1024) -> None:
        self.embedder = embedder
        self._size = size
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, query: str) -> Vectors:
        with self._lock:
            cached = self._cache.get(query)
            if cached is not None:
                self._cache.move_to_end(query)
                return cached
        vec: Vectors = embed_texts(self.embedder, [query], queries=True)[0]
        with self._lock:
            self._cache[query] = vec
            self._cache.move_to_end(query)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return vec
