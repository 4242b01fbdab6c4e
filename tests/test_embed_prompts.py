"""Query and document prompts of instruction-trained sentence-transformers models: given, or
read from the model's own configuration; queries go through ``embed_queries`` past caches."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engram import (
    BatchingEmbedder,
    DiskCachedEmbedder,
    HashEmbedder,
    Memory,
    SentenceTransformerEmbedder,
)
from engram.config import Settings, make_embedder
from engram.embed.base import Vectors, embed_texts
from engram.embed.local import bundled_model_path


def _same(a: Vectors, b: Vectors) -> bool:
    return bool(np.allclose(a, b, atol=1e-5))


def test_given_prompts_mark_queries_and_documents(
    bundled_embedder: SentenceTransformerEmbedder,
) -> None:
    prompted = SentenceTransformerEmbedder(query_prompt="query: ", document_prompt="passage: ")
    assert prompted.prompts == ("query: ", "passage: ")
    assert prompted.name == "sentence-transformers/all-MiniLM-L6-v2 (document prompt 'passage: ')"
    plain = bundled_embedder
    assert plain.prompts == ("", "") and plain.name == "sentence-transformers/all-MiniLM-L6-v2"
    texts = ["where did I go hiking?", "I hiked the Lost Coast trail in May."]
    assert _same(prompted.embed_queries(texts), plain.embed_batch([f"query: {t}" for t in texts]))
    assert _same(prompted.embed_batch(texts), plain.embed_batch([f"passage: {t}" for t in texts]))
    assert not _same(prompted.embed_batch(texts), plain.embed_batch(texts))
    assert _same(plain.embed_queries(texts), plain.embed_batch(texts))  # no prompts: the same
    assert prompted.distinct_queries and not plain.distinct_queries


@pytest.fixture
def model_with_prompts(tmp_path: Path) -> Path:
    """The bundled model's directory with prompts in its sentence-transformers configuration,
    as e5 and EmbeddingGemma ship them (the weights linked, not copied)."""
    source, target = bundled_model_path(), tmp_path / "model"
    shutil.copytree(source, target, copy_function=lambda s, d: Path(d).symlink_to(s))
    config = target / "config_sentence_transformers.json"
    doc = json.loads(config.read_text())
    doc["prompts"] = {"query": "query: ", "passage": "passage: "}
    config.unlink()
    config.write_text(json.dumps(doc))
    return target


def test_a_models_own_prompts_are_used_and_settings_override_them(
    model_with_prompts: Path, bundled_embedder: SentenceTransformerEmbedder
) -> None:
    own = make_embedder(f"st:{model_with_prompts}")
    assert isinstance(own, SentenceTransformerEmbedder)
    assert own.prompts == ("query: ", "passage: ")
    assert own.name == str(model_with_prompts)  # the model's own prompts come with the model
    text = ["the trail was muddy"]
    assert _same(
        own.embed_batch(text), bundled_embedder.embed_batch(["passage: the trail was muddy"])
    )
    settings = Settings.from_env(
        {"ENGRAM_QUERY_PROMPT": "search_query: ", "ENGRAM_DOCUMENT_PROMPT": "search_document: "}
    )
    given = make_embedder(f"st:{model_with_prompts}", settings)
    assert isinstance(given, SentenceTransformerEmbedder)
    assert given.prompts == ("search_query: ", "search_document: ")
    assert given.name.endswith("(document prompt 'search_document: ')")
    none = SentenceTransformerEmbedder(str(model_with_prompts), query_prompt="", document_prompt="")
    assert none.prompts == ("", "") and _same(
        none.embed_batch(text), bundled_embedder.embed_batch(text)
    )


class _Routes(HashEmbedder):
    """Counts which route each text took; a query's vector is not a document's (when
    ``distinct_queries``)."""

    def __init__(self, distinct: bool = True) -> None:
        super().__init__(32)
        self.distinct_queries = distinct
        self.documents: list[str] = []
        self.queries: list[str] = []

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.documents.extend(texts)
        return super().embed_batch(texts)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        self.queries.extend(texts)
        return super().embed_batch([f"q {t}" for t in texts])


def test_memory_embeds_searches_as_queries_past_the_disk_cache(tmp_path: Path) -> None:
    routes = _Routes()
    cached = DiskCachedEmbedder(routes, tmp_path / "cache.db")
    with Memory.open(tmp_path / "m.db", embedder=cached) as mem:
        mem.add([{"role": "user", "content": "I hiked the Lost Coast trail."}], user_id="u1")
        mem.search("where did I hike?", user_id="u1")
        mem.search("where did I hike?", user_id="u1")  # the Memory's own query memo
    assert routes.queries == ["where did I hike?"]
    assert "where did I hike?" not in routes.documents
    assert "I hiked the Lost Coast trail." in routes.documents
    assert cached.entries() == len(set(routes.documents))  # queries are not cached as documents
    vector = embed_texts(cached, ["x"], queries=True)[0]
    assert _same(vector[None], embed_texts(HashEmbedder(32), ["q x"]))


def test_without_distinct_queries_a_query_goes_through_the_wrappers(tmp_path: Path) -> None:
    """The bundled model has no prompts: its queries keep going through a batcher or a cache
    around it, as documents do."""
    routes = _Routes(distinct=False)
    batching = BatchingEmbedder(routes)
    try:
        assert not batching.distinct_queries
        embed_texts(batching, ["where did I hike?"], queries=True)
        assert routes.documents == ["where did I hike?"] and routes.queries == []
        assert batching.stats().calls == 1  # served by the batcher
    finally:
        batching.close()
