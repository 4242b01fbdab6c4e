"""LLMs for Engram's optional layer: extraction, consolidation and answering (see docs/llm.md).

Engram works fully without an LLM; this package is imported only when one is configured. It
needs pydantic; :class:`OpenAICompatibleLLM` (httpx) and :class:`LLMSettings` /
:func:`make_llm` (pydantic-settings) are imported on first use (``pip install
'engram-memory[llm]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engram.llm.base import (
    LLM,
    ChatMessage,
    LLMError,
    LLMOutputError,
    LLMUnavailableError,
    Usage,
    UsageMeter,
)
from engram.llm.fake import ScriptedCall, ScriptedLLM, ScriptExhaustedError

if TYPE_CHECKING:
    from engram.llm.openai import OpenAICompatibleLLM
    from engram.llm.settings import LLMSettings, make_llm

    def _implement_the_protocol(real: OpenAICompatibleLLM, fake: ScriptedLLM) -> list[LLM]:
        return [real, fake]  # mypy checks that both are LLMs


__all__ = [
    "LLM",
    "ChatMessage",
    "LLMError",
    "LLMOutputError",
    "LLMSettings",
    "LLMUnavailableError",
    "OpenAICompatibleLLM",
    "ScriptExhaustedError",
    "ScriptedCall",
    "ScriptedLLM",
    "Usage",
    "UsageMeter",
    "make_llm",
]

_LAZY = {
    "OpenAICompatibleLLM": "engram.llm.openai",
    "LLMSettings": "engram.llm.settings",
    "make_llm": "engram.llm.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engram.llm' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
