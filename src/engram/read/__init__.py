"""The read pipeline: search configuration, retrieval, fusion and scoring."""

from engram.read.config import HYBRID, LEXICAL, PRESETS, SEMANTIC, SearchConfig, resolve_config
from engram.read.fusion import minmax, recency_factor, rrf, weighted_fusion
from engram.read.retrieve import aggregate_sessions, keys_to_values, search

__all__ = [
    "HYBRID",
    "LEXICAL",
    "PRESETS",
    "SEMANTIC",
    "SearchConfig",
    "aggregate_sessions",
    "keys_to_values",
    "minmax",
    "recency_factor",
    "resolve_config",
    "rrf",
    "search",
    "weighted_fusion",
]
