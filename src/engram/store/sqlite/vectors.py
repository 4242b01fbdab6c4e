"""Exact vector search over one user's vectors, kept as an in-memory matrix.

SQLite holds the vectors (as float32 blobs, in the same transactions as the records), so the index
can never disagree with the records. Each user's matrix is loaded on first search and dropped when
the user's generation counter (bumped by every write) moves; rows this process adds are appended in
place. Why exact search rather than an ANN index: see docs/vector-index.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
import numpy.typing as npt
from threadpoolctl import ThreadpoolController

from engram.embed.base import Vectors

__all__ = ["UserMatrix", "top_k"]


@dataclass
class UserMatrix:
    """One user's vectors with the columns a search may filter on."""

    generation: int
    ids: npt.NDArray[np.object_]
    kinds: npt.NDArray[np.object_]
    sessions: npt.NDArray[np.object_]
    agents: npt.NDArray[np.object_]
    matrix: Vectors
    _kind_masks: dict[tuple[str, ...], npt.NDArray[np.bool_]] = field(default_factory=dict)
    _last: tuple[bytes, Vectors] | None = None

    @classmethod
    def empty(cls, generation: int, dim: int) -> UserMatrix:
        none = np.empty(0, dtype=object)
        return cls(generation, none, none, none, none, np.zeros((0, dim), dtype=np.float32))

    def append(
        self,
        generation: int,
        rows: list[tuple[str, str, str | None, str | None]],
        vectors: Vectors,
    ) -> None:
        """Add rows (id, kind, session_id, agent_id) written by this process."""
        cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
        self.ids = np.concatenate([self.ids, np.array(cols[0], dtype=object)])
        self.kinds = np.concatenate([self.kinds, np.array(cols[1], dtype=object)])
        self.sessions = np.concatenate([self.sessions, np.array(cols[2], dtype=object)])
        self.agents = np.concatenate([self.agents, np.array(cols[3], dtype=object)])
        self.matrix = np.vstack([self.matrix, vectors.astype(np.float32)])
        self.generation = generation
        self._kind_masks = {}
        self._last = None

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
            same = self.sessions == session_id
            keep = same if keep is None else keep & same
        if agent_id is not None:
            same = self.agents == agent_id
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
