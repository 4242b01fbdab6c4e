"""The real bundled all-MiniLM-L6-v2 model: loads offline from site-packages and retrieves by
meaning where words do not overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engram import Memory, SentenceTransformerEmbedder, SqliteStore
from engram.embed import bundled_model_path, embed_texts

pytestmark = pytest.mark.slow

CHAT = [
    {"role": "user", "content": "We finally adopted a beagle puppy from the shelter!", "id": "pet"},
    {"role": "assistant", "content": "That's wonderful news, enjoy the walks.", "id": "pet-a"},
    {"role": "user", "content": "My sister is getting married in Lisbon in June.", "id": "wed"},
    {"role": "assistant", "content": "Portugal in early summer is beautiful.", "id": "wed-a"},
    {"role": "user", "content": "I switched from Python to Rust at work.", "id": "job"},
    {"role": "assistant", "content": "The borrow checker takes getting used to.", "id": "job-a"},
]  # fmt: skip


def test_bundled_model_is_shipped_in_site_packages() -> None:
    path = bundled_model_path()
    assert (path / "model.safetensors").is_file()
    assert "site-packages" in str(path)


def test_vectors_are_unit_length_and_meaningful(
    bundled_embedder: SentenceTransformerEmbedder,
) -> None:
    assert bundled_embedder.dim == 384
    v = embed_texts(bundled_embedder, ["a dog", "a puppy", "quarterly tax filing"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3


def test_batches_of_similar_length_give_each_text_its_own_vector(
    bundled_embedder: SentenceTransformerEmbedder,
) -> None:
    texts = ["a dog", "Lisbon in June " * 60, "a puppy", "quarterly tax filing, " * 20, "a dog"]
    together = bundled_embedder.embed_batch(texts)
    alone = np.vstack([bundled_embedder.embed_batch([t]) for t in texts])
    assert together.shape == (5, 384)
    np.testing.assert_allclose(together, alone, atol=1e-5)  # back in input order, unpadded


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What pet does the user have?", "pet"),
        ("Which family event is coming up?", "wed"),
        ("What programming language do they use for their job now?", "job"),
    ],
)
def test_semantic_search_answers_paraphrases(
    tmp_path: Path, bundled_embedder: SentenceTransformerEmbedder, question: str, expected: str
) -> None:
    with Memory(store=SqliteStore(tmp_path / "e.db"), embedder=bundled_embedder) as mem:
        mem.add(CHAT, user_id="u1", session_id="s1")
        hybrid = mem.search(question, user_id="u1", limit=2)
        semantic = mem.search(question, user_id="u1", limit=1, config="semantic")
    assert semantic[0].message_id == expected
    assert expected in {h.message_id for h in hybrid}
