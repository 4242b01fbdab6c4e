"""Embedders: the protocol, the bundled local model, an OpenAI-compatible client, a test fake,
a persistent cache of vectors, micro-batching of concurrent calls."""

from engram.embed.base import CachedQueryEmbedder, Embedder, Vectors, embed_texts
from engram.embed.batching import BatchingEmbedder, BatchStats
from engram.embed.cache import DiskCachedEmbedder
from engram.embed.fake import HashEmbedder
from engram.embed.local import BUNDLED_MODEL, SentenceTransformerEmbedder, bundled_model_path
from engram.embed.openai import OpenAIEmbedder

__all__ = [
    "BUNDLED_MODEL",
    "BatchStats",
    "BatchingEmbedder",
    "CachedQueryEmbedder",
    "DiskCachedEmbedder",
    "Embedder",
    "HashEmbedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "Vectors",
    "bundled_model_path",
    "embed_texts",
]
