"""A scripted LLM for tests: answers from a list, through the same validation and retry loop as
the real client, and records what it was asked."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from pydantic import BaseModel

from engram.llm._retry import Reply, complete_validated, estimate_tokens
from engram.llm.base import ChatMessage, Usage, UsageMeter

__all__ = ["ScriptEntry", "ScriptExhaustedError", "ScriptedCall", "ScriptedLLM"]

T = TypeVar("T", bound=BaseModel)

#: What an answer can be: a model instance or a dict (sent as its JSON), a raw string (sent as
#: is, so invalid JSON exercises the retries) or an exception (raised, the request counts as
#: failed).
Answer: TypeAlias = BaseModel | Mapping[str, Any] | str | BaseException
#: A script entry: an answer, or a function of the request's messages and schema that gives one.
ScriptEntry: TypeAlias = Answer | Callable[[Sequence[ChatMessage], type[BaseModel]], Answer]


class ScriptExhaustedError(AssertionError):
    """The test's script had no entry left for a request. Not an
    :class:`~engram.errors.LLMError`, so code that degrades gracefully on LLM failures does not
    hide a test's miscount."""


@dataclass(frozen=True)
class ScriptedCall:
    """One request the fake answered (each retry is one): the conversation it was given and the
    name of the schema asked for."""

    messages: tuple[ChatMessage, ...]
    schema: str
    max_tokens: int | None = None


class ScriptedLLM:
    """An :class:`~engram.llm.LLM` that answers each request with the next script entry.

    Answers go through the shared parse-validate-correct loop, so a script of
    ``["not json", {"ok": True}]`` makes one ``complete_json`` call use two entries and see a
    correction message in the second request. ``calls`` lists every request; token counts are
    ``len(text) / 4`` estimates."""

    def __init__(self, script: Iterable[ScriptEntry] = (), *, max_retries: int = 2) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._script: list[ScriptEntry] = list(script)
        self._max_retries = max_retries
        self._next = 0
        self._calls: list[ScriptedCall] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[ScriptedCall]:
        """The requests so far, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    @property
    def remaining(self) -> int:
        """Script entries not used yet."""
        with self._lock:
            return len(self._script) - self._next

    def extend(self, entries: Iterable[ScriptEntry]) -> None:
        """Append entries to the script."""
        with self._lock:
            self._script.extend(entries)

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: type[T],
        *,
        meter: UsageMeter | None = None,
        max_tokens: int | None = None,
    ) -> T:
        def send(conversation: Sequence[ChatMessage]) -> Reply:
            return self._answer(conversation, schema, meter, max_tokens)

        return complete_validated(
            send, messages, schema, max_retries=self._max_retries, meter=meter, model=self.name
        )

    def _take(self, call: ScriptedCall) -> ScriptEntry:
        with self._lock:
            self._calls.append(call)
            if self._next >= len(self._script):
                raise ScriptExhaustedError(
                    f"ScriptedLLM: no script entry left for request {len(self._calls)} "
                    f"(schema {call.schema}); the script had {len(self._script)} entries"
                )
            entry = self._script[self._next]
            self._next += 1
            return entry

    def _answer(
        self,
        conversation: Sequence[ChatMessage],
        schema: type[BaseModel],
        meter: UsageMeter | None,
        max_tokens: int | None,
    ) -> Reply:
        messages = tuple(conversation)
        entry = self._take(ScriptedCall(messages, schema.__name__, max_tokens))
        answer = entry(messages, schema) if callable(entry) else entry
        if isinstance(answer, BaseException):
            if meter is not None:
                meter.record(Usage(failed=1))
            raise answer
        text = _text(answer)
        prompt = sum(estimate_tokens(m.content) for m in messages)
        return Reply(text, prompt, estimate_tokens(text))


def _text(answer: Answer) -> str:
    if isinstance(answer, BaseModel):
        return answer.model_dump_json()
    if isinstance(answer, str):
        return answer
    if isinstance(answer, Mapping):
        return json.dumps(dict(answer))
    raise TypeError(f"ScriptedLLM: unsupported script answer {type(answer).__name__}")
