"""A deterministic embedder for fast tests: hashed word and character-trigram features.

Texts that share words get similar vectors, so retrieval tests behave sensibly, but no model is
loaded. Never use it for real retrieval.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from engram.embed.base import Vectors

__all__ = ["HashEmbedder"]

_WORD = re.compile(r"\w+", re.UNICODE)


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 63) & 1 else -1.0)


class HashEmbedder:
    """Feature hashing of lower-cased words (weight 1) and their character trigrams (0.3)."""

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hash-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                col, sign = _bucket("w:" + word, self._dim)
                out[row, col] += sign
                padded = f"#{word}#"
                for i in range(len(padded) - 2):
                    col, sign = _bucket("c:" + padded[i : i + 3], self._dim)
                    out[row, col] += 0.3 * sign
        return out
