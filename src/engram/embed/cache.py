"""A persistent cache of an embedder's vectors: each text is embedded once per model, ever.

Re-importing a conversation, rebuilding an index with other settings, or running a benchmark
again (LongMemEval's haystacks share many sessions between questions) then pays only for the
texts it has not seen. The cache is one SQLite file, safe to share between processes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from engram.embed.base import Embedder, Vectors, WrappingEmbedder
from engram.errors import ConfigurationError, EmbeddingError

__all__ = ["DiskCachedEmbedder"]

_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    key BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, key)
) WITHOUT ROWID
"""
_CHUNK = 500  # keys per SELECT, under SQLite's default limit of bound parameters


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class DiskCachedEmbedder(WrappingEmbedder):
    """An :class:`Embedder` that keeps the vectors ``inner`` computes in a SQLite file at
    ``path`` and looks them up before embedding: same ``name`` and ``dim`` as ``inner``, same
    vectors (as float32). Entries are keyed by the model (name and dimension) and the SHA-256
    of the text, so one file can serve several models. The file is opened on first use, and the
    object can be sent to worker processes (each opens its own connection); ``timeout`` is how
    many seconds to wait for another process's write."""

    def __init__(self, inner: Embedder, path: str | Path, *, timeout: float = 60.0) -> None:
        if str(path) == ":memory:" or not str(path).strip():
            raise ConfigurationError("an embedding cache needs a file path")
        self._setup(inner, Path(path), timeout)

    def _setup(self, inner: Embedder, path: Path, timeout: float) -> None:
        self.inner = inner
        self.path = path
        self.timeout = timeout
        self.hits = 0  # texts served without the model / texts it embedded, since creation
        self.misses = 0
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def _model(self) -> str:
        return f"{self.inner.name}#{self.inner.dim}"

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        keys = [_key(t) for t in texts]
        with self._lock, self._errors():
            found = self._lookup(list(dict.fromkeys(keys)))
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        if missing:
            fresh = self._embed(list(missing.values()))
            with self._lock, self._errors():
                self._store(list(missing), fresh)
            found.update(zip(missing, fresh, strict=True))
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def _embed(self, texts: list[str]) -> Vectors:
        vectors = np.asarray(self.inner.embed_batch(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise EmbeddingError(
                f"embedder {self.name!r} returned shape {vectors.shape}, "
                f"expected {(len(texts), self.dim)}"
            )
        return vectors

    def _lookup(self, keys: list[bytes]) -> dict[bytes, Vectors]:
        conn, size = self._connect(), 4 * self.dim
        found: dict[bytes, Vectors] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = conn.execute(
                f"SELECT key, vector FROM vectors WHERE model = ? "
                f"AND key IN ({', '.join('?' * len(chunk))})",
                [self._model, *chunk],
            ).fetchall()
            for key, blob in rows:
                if len(blob) == size:  # anything else is damage: embed the text again
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _store(self, keys: list[bytes], vectors: Vectors) -> None:
        conn = self._connect()
        with conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (model, key, vector) VALUES (?, ?, ?)",
                [(self._model, k, v.tobytes()) for k, v in zip(keys, vectors, strict=True)],
            )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A failing cache file (locked past the timeout, read-only, full) is a configuration
        problem of ours, reported with its path."""
        try:
            yield
        except sqlite3.Error as exc:
            raise ConfigurationError(f"embedding cache {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
                conn.execute("PRAGMA journal_mode = WAL")
                self._check_version(conn)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigurationError(f"cannot open embedding cache {self.path}: {exc}") from exc
            self._conn = conn
        return self._conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        if version == 0 and not tables:  # a new file
            with conn:
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {_VERSION}")
        elif version != _VERSION:
            conn.close()
            raise ConfigurationError(
                f"{self.path} is not an Engram embedding cache (version {version})"
            )

    def entries(self) -> int:
        """How many vectors the file holds, for every model."""
        with self._lock:
            return int(self._connect().execute("SELECT count(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> DiskCachedEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["inner"], state["path"], state["timeout"])
