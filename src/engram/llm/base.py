"""The LLM protocol: one method that returns a validated pydantic model, and the usage meter
that counts what calls cost.

Every piece of Engram that asks a model something (extraction, consolidation, answering, the QA
bench's reader and judge) goes through :class:`LLM`; backends are
:class:`~engram.llm.OpenAICompatibleLLM` (OpenAI, Ollama, vLLM, llama.cpp's server) and, for
tests, :class:`~engram.llm.ScriptedLLM`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from engram.errors import LLMError, LLMOutputError, LLMUnavailableError
from engram.types import Usage

__all__ = [
    "LLM",
    "ChatMessage",
    "LLMError",
    "LLMOutputError",
    "LLMUnavailableError",
    "Usage",
    "UsageMeter",
]

T = TypeVar("T", bound=BaseModel)

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: Role
    content: str


class UsageMeter:
    """A thread-safe running total of :class:`Usage`, given to :meth:`LLM.complete_json` by the
    caller that wants to know what its calls cost (one meter per add, answer or bench run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = Usage()

    def record(self, usage: Usage) -> None:
        with self._lock:
            self._total = self._total + usage

    @property
    def total(self) -> Usage:
        with self._lock:
            return self._total


class LLM(Protocol):
    """A chat model that answers with JSON matching a schema."""

    @property
    def name(self) -> str:
        """The model, as results and stats report it (e.g. ``openai:gpt-4o-mini``)."""
        ...

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: type[T],
        *,
        meter: UsageMeter | None = None,
        max_tokens: int | None = None,
    ) -> T:
        """Ask the model and return its answer validated as ``schema``. Answers that are not
        valid JSON for the schema are retried a bounded number of times (the error is shown to
        the model); transport failures and error statuses likewise. Every request, answered or
        not, is recorded in ``meter``. Raises :class:`LLMOutputError` or
        :class:`LLMUnavailableError` when the retries are spent."""
        ...
