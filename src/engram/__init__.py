"""Engram: long-term memory for LLM agents and chat assistants.

>>> from engram import Memory
>>> mem = Memory.open("engram.db")
>>> mem.add([{"role": "user", "content": "I moved to Lisbon in May."}], user_id="u1")
>>> mem.search("where does the user live?", user_id="u1")

``Client("http://127.0.0.1:8765")`` has the same methods, served by ``engram serve``.
"""

from engram.client import Client
from engram.embed import (
    BatchingEmbedder,
    DiskCachedEmbedder,
    Embedder,
    HashEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
)
from engram.errors import (
    AccessError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DataError,
    EmbeddingError,
    EngramError,
    InvalidInputError,
    LLMError,
    LLMOutputError,
    LLMUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    ScopeError,
    StoreError,
    StoreLockedError,
)
from engram.memory import Memory
from engram.read import HYBRID, LEXICAL, PRESETS, SEMANTIC, SearchConfig
from engram.store import SqliteStore, Store
from engram.types import (
    Answer,
    HistoryEvent,
    Hit,
    JobReport,
    KeyRef,
    MemoryRecord,
    ProcessReport,
    RecordFilter,
    RecordKind,
    RetrieverScore,
    Scope,
    SessionHit,
    StoreStats,
)
from engram.write.reembed import ReembedReport

__version__ = "0.1.0"

__all__ = [
    "HYBRID",
    "LEXICAL",
    "PRESETS",
    "SEMANTIC",
    "AccessError",
    "Answer",
    "AuthenticationError",
    "BatchingEmbedder",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "DataError",
    "DiskCachedEmbedder",
    "Embedder",
    "EmbeddingError",
    "EngramError",
    "HashEmbedder",
    "HistoryEvent",
    "Hit",
    "InvalidInputError",
    "JobReport",
    "KeyRef",
    "LLMError",
    "LLMOutputError",
    "LLMUnavailableError",
    "Memory",
    "MemoryRecord",
    "NotFoundError",
    "OpenAIEmbedder",
    "PermissionDeniedError",
    "ProcessReport",
    "RecordFilter",
    "RecordKind",
    "ReembedReport",
    "RetrieverScore",
    "Scope",
    "ScopeError",
    "SearchConfig",
    "SentenceTransformerEmbedder",
    "SessionHit",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreStats",
    "__version__",
]
