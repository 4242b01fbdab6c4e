"""The bundled all-MiniLM-L6-v2 weights on ONNX Runtime (opt-in: embedder spec ``onnx``).

The vectors are the default embedder's, up to float rounding (cosine >= 0.99999 measured, see
docs/benchmarks.md "Speed v2"), so it has the same ``name`` and a store built with one is searched
with the other. What differs is the cost: on a shared 2-core machine onnxruntime embedded
LoCoMo turns ~4x faster than torch, at ~30% of its CPU time (torch's OpenMP threads spin).

No ONNX file ships with the weights: on first use the packaged safetensors are exported once
(offline, with the torch and transformers that the default embedder installs anyway; ~7 s) into
``cache_dir`` (default ``~/.cache/engram/onnx``), under the weights' SHA-256, written to a
temporary file and renamed, so concurrent first uses are safe. At run time it needs
``onnxruntime`` and ``tokenizers`` (``pip install 'engram-memory[onnx]'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engram.embed.base import Vectors
from engram.embed.local import _quiet_transformers, bundled_model_path, length_batches
from engram.errors import ConfigurationError

__all__ = ["OnnxEmbedder", "export_bundled", "onnx_dir"]

_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # the bundled model's: the same vectors
_LOADING = threading.Lock()


def onnx_dir() -> Path:
    """Where exported ONNX files are kept by default: the user's cache."""
    return Path.home() / ".cache" / "engram" / "onnx"


def _weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as weights:
        while chunk := weights.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def export_bundled(dest: Path) -> Path:
    """Export the bundled weights to ``dest`` (an ONNX file with ``last_hidden_state``)."""
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - the default install has both
        raise ConfigurationError("exporting the ONNX model needs torch and transformers") from exc

    class LastHidden(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    _quiet_transformers()
    source = bundled_model_path()
    model = AutoModel.from_pretrained(
        source, local_files_only=True, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    example = tokenizer(
        ["an example", "a slightly longer example"], padding=True, return_tensors="pt"
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation, tracer notes
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHidden(model), tuple(example[n] for n in names), tmp,
                input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "sequence"}
                              for n in [*names, "last_hidden_state"]},
                opset_version=17, dynamo=False,
            )  # fmt: skip
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


class OnnxEmbedder:
    """The bundled model on onnxruntime: BERT tokens (``tokenizers``), the exported graph, mean
    pooling over the attention mask, L2 normalisation; texts in length-bucketed batches
    (:func:`~engram.embed.local.length_batches`). ``threads``: onnxruntime's intra-op threads
    (0: its default, one per core); ``cache_dir``: where the export is kept (default
    :func:`onnx_dir`). Thread-safe (onnxruntime sessions are)."""

    def __init__(
        self, *, batch_size: int = 64, threads: int = 0, cache_dir: str | Path | None = None
    ) -> None:
        self._batch_size = batch_size
        self._threads = threads
        self._cache_dir = Path(cache_dir) if cache_dir is not None else onnx_dir()
        self._session: Any = None
        self._tokenizer: Any = None
        self._dim = 0

    @property
    def name(self) -> str:
        return _NAME

    @property
    def dim(self) -> int:
        self._load()
        return self._dim

    def _load(self) -> Any:
        if self._session is not None:
            return self._session
        with _LOADING:
            if self._session is None:
                self._open()
        return self._session

    def _open(self) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigurationError(
                "the onnx embedder needs onnxruntime: pip install 'engram-memory[onnx]'"
            ) from exc
        source = bundled_model_path()
        path = self._cache_dir / f"all-MiniLM-L6-v2-{_weights_digest(source)}.onnx"
        if not path.exists():
            export_bundled(path)
        config = json.loads((source / "sentence_bert_config.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        tokenizer.enable_truncation(int(config["max_seq_length"]))
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        hidden = json.loads((source / "config.json").read_text(encoding="utf-8"))["hidden_size"]
        self._dim, self._tokenizer = int(hidden), tokenizer
        self._session = session  # last: it says "ready"

    def _run(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return out

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self._load()
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for batch in length_batches([len(t) for t in texts], max_batch=self._batch_size):
            out[batch] = self._run([texts[i] for i in batch])
        return out
