"""LLMs for Engram's optional layer: extraction, consolidation and answering (see docs/llm.md).

Engram works fully without an LLM; this package is imported only when one is configured.
"""

from engram.llm.base import (
    LLM,
    ChatMessage,
    LLMError,
    LLMOutputError,
    LLMUnavailableError,
    Usage,
    UsageMeter,
)

__all__ = [
    "LLM",
    "ChatMessage",
    "LLMError",
    "LLMOutputError",
    "LLMUnavailableError",
    "Usage",
    "UsageMeter",
]
