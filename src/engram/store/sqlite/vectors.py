"""Exact vector search over one user's vectors, kept as an in-memory matrix.

SQLite holds the vectors (as float32 blobs, in the same transactions as the records), so the index
can never disagree with the records. Each user's matrix is loaded on first search and kept in a
:class:`~engram.store.sqlite.usercache.UserCache`; rows this process adds are appended in place.
Why exact search rather than an ANN index: see docs/vector-index.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
import numpy.typing as npt
from threadpoolctl import ThreadpoolController

from engram.embed.base import Vectors

__all__ = ["UserMatrix", "top_k"]


Row = tuple[str, str, str | None, str | None]  # id, kind, session_id, agent_id


def _columns(rows: list[Row]) -> list[npt.NDArray[np.object_]]:
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return [np.array(col, dtype=object) for col in cols]


@dataclass
class UserMatrix:
    """One user's vectors with the columns a search may filter on (id, kind, session, agent).
    Vectors and columns live in buffers that grow by a quarter when full, so appending after
    every write costs amortised O(rows added), not a copy of everything, for at most 25% spare
    memory; cached kind masks are extended, not recomputed."""

    _columns: list[npt.NDArray[np.object_]]
    _buffer: Vectors
    _rows: int
    _kind_masks: dict[tuple[str, ...], npt.NDArray[np.bool_]] = field(default_factory=dict)
    _last: tuple[bytes, Vectors] | None = None

    @classmethod
    def load(cls, rows: list[Row], vectors: Vectors) -> UserMatrix:
        """A matrix over ``vectors`` as they are (no copy: a read-only array from the database's
        bytes is fine, the first append copies it into a growable buffer)."""
        if vectors.dtype != np.float32 or vectors.shape[0] != len(rows):
            raise ValueError("one float32 vector per row")
        return cls(_columns(rows), vectors, len(rows))

    @property
    def matrix(self) -> Vectors:
        return self._buffer[: self._rows]

    @property
    def ids(self) -> npt.NDArray[np.object_]:
        return self._columns[0][: self._rows]

    @property
    def kinds(self) -> npt.NDArray[np.object_]:
        return self._columns[1][: self._rows]

    def append(self, rows: list[Row], vectors: Vectors) -> UserMatrix:
        """Add rows written by this process; returns the matrix itself."""
        start, needed = self._rows, self._rows + len(rows)
        if needed > self._buffer.shape[0] or not self._buffer.flags.writeable:
            size = start + max(len(rows), self._buffer.shape[0] // 4, 64)
            grown = np.empty((size, vectors.shape[1]), dtype=np.float32)
            grown[:start] = self.matrix
            self._buffer = grown
        if needed > self._columns[0].shape[0]:
            size = self._buffer.shape[0]
            self._columns = [np.concatenate([c[:start], np.empty(size - start, dtype=object)])
                             for c in self._columns]  # fmt: skip
        for column, values in zip(self._columns, _columns(rows), strict=True):
            column[start:needed] = values
        self._buffer[start:needed] = vectors
        self._rows = needed
        new_kinds = self._columns[1][start:needed]
        self._kind_masks = {
            kinds: np.concatenate([keep, np.isin(new_kinds, np.array(kinds, dtype=object))])
            for kinds, keep in self._kind_masks.items()
        }
        self._last = None
        return self

    def mask(
        self, kinds: tuple[str, ...], session_id: str | None, agent_id: str | None
    ) -> npt.NDArray[np.bool_] | None:
        """Rows passing the filter, or None when every row passes."""
        keep: npt.NDArray[np.bool_] | None = None
        if kinds:
            keep = self._kind_masks.get(kinds)
            if keep is None:
                keep = np.isin(self.kinds, np.array(kinds, dtype=object))
                self._kind_masks[kinds] = keep
        if session_id is not None:
            same = self._columns[2][: self._rows] == session_id
            keep = same if keep is None else keep & same
        if agent_id is not None:
            same = self._columns[3][: self._rows] == agent_id
            keep = same if keep is None else keep & same
        return keep

    def scores(self, query: Vectors) -> Vectors:
        """Cosine similarity of every row with ``query`` (rows and query are unit vectors). The
        last query's scores are kept: one search runs several retrievers with the same vector.

        The product runs on one BLAS thread: OpenBLAS threads keep spinning after a call and
        fight the embedding model's threads for the cores. Measured on 2 cores
        (docs/benchmarks.md), a query (embed, then search) took ~80 ms with a threaded product
        and ~20 ms without; the product itself is 0.3 ms at 5k vectors and 10 ms at 100k."""
        vector = query.astype(np.float32)
        key = vector.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        with _blas().limit(limits=1, user_api="blas"):
            scores: Vectors = self.matrix @ vector
        self._last = (key, scores)
        return scores


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def top_k(
    scores: Vectors, k: int, keep: npt.NDArray[np.bool_] | None = None
) -> list[tuple[int, float]]:
    """Row indices and scores of the best ``k`` rows among those ``keep`` allows."""
    if scores.shape[0] == 0 or k <= 0:
        return []
    if keep is not None:
        scores = np.where(keep, scores, -np.inf)
        k = min(k, int(keep.sum()))
        if k == 0:
            return []
    k = min(k, scores.shape[0])
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return [(int(i), float(scores[i])) for i in order]
