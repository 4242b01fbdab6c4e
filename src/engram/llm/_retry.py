"""The loop every backend shares: parse an answer as the schema, and on a bad one show the model
its answer and what was wrong with it, a bounded number of times.

A backend supplies ``send`` (one request: the conversation so far in, the raw text of the answer
and its token counts out); transport failures are the backend's business and surface from
``send`` as exceptions (:class:`~engram.errors.LLMUnavailableError` for the real client). This
module records every answered request in the meter, so :class:`~engram.llm.ScriptedLLM` and
:class:`~engram.llm.OpenAICompatibleLLM` count the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from engram.errors import LLMOutputError
from engram.llm.base import ChatMessage, Usage, UsageMeter

__all__ = ["Reply", "complete_validated", "correction", "parse_reply", "strip_fences"]

T = TypeVar("T", bound=BaseModel)

#: How much of a validation error the correction message and LLMOutputError quote.
PROBLEM_CHARS = 600
#: How much of a bad answer is echoed back to the model as the assistant turn.
ECHO_CHARS = 4000

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n?(.*?)\r?\n?[ \t]*```", re.DOTALL)


@dataclass(frozen=True)
class Reply:
    """One answered request: the answer's text (``""`` when the endpoint gave none) and the
    tokens it cost."""

    content: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class InvalidAnswer(ValueError):
    """An answer that is not JSON for the schema; ``problem`` says why, briefly."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def strip_fences(text: str) -> str:
    """The JSON inside a Markdown code fence (```` ```json ... ``` ````), if the answer has one;
    otherwise the answer, stripped."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return stripped
    match = _FENCE.search(stripped)
    return match.group(1).strip() if match else stripped


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return f"{exc.error_count()} error(s): " + "; ".join(parts)


def parse_reply(content: str, schema: type[T]) -> T:
    """``content`` validated as ``schema``; raises :class:`InvalidAnswer`."""
    text = strip_fences(content)
    if not text:
        raise InvalidAnswer("the answer was empty, not a JSON object")
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidAnswer(f"the answer is not valid JSON ({exc})") from None
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidAnswer(
            f"the JSON does not match the schema {schema.__name__}: {_describe(exc)}"
        ) from None


def correction(problem: str) -> str:
    """The user message that follows a bad answer."""
    return (
        f"That answer was rejected: {_truncate(problem, PROBLEM_CHARS)}\n"
        "Reply again with only a JSON object that matches the schema: no prose, no code fence."
    )


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return (len(text) + 3) // 4


def complete_validated(
    send: Callable[[Sequence[ChatMessage]], Reply],
    messages: Sequence[ChatMessage],
    schema: type[T],
    *,
    max_retries: int,
    meter: UsageMeter | None,
    model: str,
) -> T:
    """Ask through ``send`` until an answer validates as ``schema``: at most ``1 +
    max_retries`` answered requests, each one after a bad answer carrying that answer and a
    :func:`correction`. Every answer is recorded in ``meter`` as one call. Raises
    :class:`LLMOutputError` (naming the last problem) when the retries are spent; exceptions
    from ``send`` propagate."""
    if not messages:
        raise ValueError("complete_json needs at least one message")
    conversation = list(messages)
    problem = ""
    for _ in range(max_retries + 1):
        reply = send(tuple(conversation))
        if meter is not None:
            meter.record(Usage(1, 0, reply.prompt_tokens, reply.completion_tokens))
        try:
            return parse_reply(reply.content, schema)
        except InvalidAnswer as exc:
            problem = exc.problem
        conversation.append(ChatMessage("assistant", _truncate(reply.content, ECHO_CHARS)))
        conversation.append(ChatMessage("user", correction(problem)))
    attempts = max_retries + 1
    raise LLMOutputError(
        f"{model}: no valid {schema.__name__} after {attempts} answer(s); "
        f"last: {_truncate(problem, PROBLEM_CHARS)}"
    )
