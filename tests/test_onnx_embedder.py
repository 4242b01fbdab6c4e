"""The opt-in ONNX Runtime embedder (spec ``onnx``): exported offline from the bundled weights,
the same vectors as the default embedder, so one store serves both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engram import Memory, SentenceTransformerEmbedder, SqliteStore
from engram.config import make_embedder
from engram.embed.onnx import OnnxEmbedder

pytest.importorskip("onnxruntime")

TEXTS = [
    "Caroline: I went to the LGBTQ support group yesterday and it was so powerful.",
    "Melanie: Wow, that's great! What did you paint last week?",
    "ok",
    "A much longer text about a camping trip by the lake with the kids, " * 12,
    "Dr. Smith said the pottery class starts in May. I can't wait! Can you?",
]


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    return OnnxEmbedder(cache_dir=tmp_path_factory.mktemp("onnx"))


def test_same_vectors_as_the_bundled_model(
    onnx_embedder: OnnxEmbedder, bundled_embedder: SentenceTransformerEmbedder
) -> None:
    assert onnx_embedder.name == bundled_embedder.name
    assert onnx_embedder.dim == bundled_embedder.dim == 384
    ours, theirs = onnx_embedder.embed_batch(TEXTS), bundled_embedder.embed_batch(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert float((ours * theirs).sum(axis=1).min()) >= 0.99999


def test_export_is_reused(onnx_embedder: OnnxEmbedder, tmp_path: Path) -> None:
    onnx_embedder.embed_batch(["load"])
    files = list(onnx_embedder._cache_dir.glob("*.onnx"))
    assert len(files) == 1 and not list(onnx_embedder._cache_dir.glob("*.tmp"))
    again = OnnxEmbedder(cache_dir=onnx_embedder._cache_dir)
    assert np.array_equal(again.embed_batch(TEXTS), onnx_embedder.embed_batch(TEXTS))
    assert list(onnx_embedder._cache_dir.glob("*.onnx")) == files


def test_a_store_indexed_by_one_is_searched_by_the_other(
    onnx_embedder: OnnxEmbedder, bundled_embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    db = tmp_path / "m.db"
    with Memory(store=SqliteStore(db), embedder=onnx_embedder) as mem:
        mem.add([{"role": "user", "content": TEXTS[0], "name": "Caroline"}], user_id="u")
    with Memory(store=SqliteStore(db), embedder=bundled_embedder) as mem:
        hits = mem.search("support group", user_id="u", config="semantic")
    assert [h.record.text for h in hits] == [TEXTS[0]]


def test_spec() -> None:
    assert isinstance(make_embedder("onnx"), OnnxEmbedder)
