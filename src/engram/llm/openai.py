"""An :class:`~engram.llm.LLM` over any OpenAI-compatible ``/chat/completions`` endpoint: OpenAI,
Ollama, vLLM, llama.cpp's ``llama-server`` and llama-cpp-python's server (see docs/llm.md).

The schema goes in ``response_format`` in one of two forms: OpenAI's
``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`` or llama.cpp's
``{"type": "json_object", "schema": ...}``. In ``"auto"`` mode the first is tried, and an
endpoint that refuses it (llama-cpp-python answers it with HTTP 500) gets the second from then
on. Answers are validated, and retried with a correction, by the loop in ``engram.llm._retry``;
this module retries the transport: timeouts, refused connections, 5xx, 408 and 429.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from engram.errors import ConfigurationError, LLMUnavailableError
from engram.llm._retry import Reply, complete_validated
from engram.llm.base import ChatMessage, Usage, UsageMeter

__all__ = ["Form", "OpenAICompatibleLLM", "ResponseFormat"]

T = TypeVar("T", bound=BaseModel)

#: How the schema is sent: ``"auto"`` tries ``json_schema`` and falls back to ``json_object``.
ResponseFormat = Literal["auto", "json_schema", "json_object"]
#: The two wire forms.
Form = Literal["json_schema", "json_object"]

_MESSAGE_CHARS = 300
_FORMAT_WORDS = re.compile(r"response_format|json_schema", re.IGNORECASE)
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_-]")
_USERINFO = re.compile(r"://[^/@]*@")


@dataclass(frozen=True)
class _Failure:
    """A request that got no usable answer: why, whether another attempt may help, how long
    the server asked us to wait, and whether it refused the ``json_schema`` form."""

    problem: str
    retryable: bool
    retry_after: float | None = None
    refused_form: bool = False


class OpenAICompatibleLLM:
    """A chat model behind ``{base_url}/chat/completions`` (``base_url`` like
    ``http://localhost:11434/v1``), asked for JSON matching a pydantic schema.

    ``timeout`` is per request (connect, and each wait for data); ``max_attempts`` requests
    are made per answer when the transport fails (timeouts, refused connections, 5xx, 408, 429,
    waiting ``backoff`` seconds doubling up to ``max_backoff``, or what ``Retry-After`` says up
    to ``max_retry_after``); other 4xx statuses (a bad key, an unknown model) fail at once.
    ``max_retries`` more answers are asked for when one is not JSON for the schema. One
    instance is safe to share between threads; :meth:`close` releases its connections. The API
    key is sent as a bearer token and appears in no message or ``repr``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        response_format: ResponseFormat = "auto",
        max_retries: int = 2,
        max_attempts: int = 3,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        headers: Mapping[str, str] | None = None,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_after: float = 30.0,
    ) -> None:
        _check_arguments(base_url, model, timeout, response_format, max_retries, max_attempts)
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._shown_url = _USERINFO.sub("://", self._url)  # no user:password@ in messages
        self._model = model
        self._key = api_key or None
        self._timeout = timeout
        self._auto = response_format == "auto"
        self._form: Form = "json_object" if response_format == "json_object" else "json_schema"
        self._max_retries = max_retries
        self._max_attempts = max_attempts
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._backoff = (backoff, max_backoff, max_retry_after)
        self._lock = threading.Lock()
        sent = {"Accept": "application/json", **(headers or {})}
        if self._key is not None:
            sent["Authorization"] = f"Bearer {self._key}"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=sent)

    @property
    def name(self) -> str:
        return f"openai:{self._model}"

    @property
    def response_format(self) -> Form:
        """The form the next request uses; in ``"auto"`` mode ``"json_object"`` once the
        endpoint has refused ``"json_schema"`` and accepted it."""
        with self._lock:
            return self._form

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: type[T],
        *,
        meter: UsageMeter | None = None,
        max_tokens: int | None = None,
    ) -> T:
        schema_json = wire_schema(schema.model_json_schema())
        limit = self._max_tokens if max_tokens is None else max_tokens

        def send(conversation: Sequence[ChatMessage]) -> Reply:
            return self._request(conversation, schema.__name__, schema_json, limit, meter)

        return complete_validated(
            send, messages, schema, max_retries=self._max_retries, meter=meter, model=self.name
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAICompatibleLLM:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM({self._shown_url!r}, {self._model!r})"

    # -- one answer: transport attempts, and the json_schema -> json_object fallback --

    def _request(
        self,
        conversation: Sequence[ChatMessage],
        schema_name: str,
        schema_json: dict[str, Any],
        max_tokens: int,
        meter: UsageMeter | None,
    ) -> Reply:
        form = self.response_format
        refused = ""
        attempt = 0
        while True:
            body = self._body(conversation, form, schema_name, schema_json, max_tokens)
            outcome = self._attempt(body, form)
            if isinstance(outcome, Reply):
                self._remember(form)
                return outcome
            if meter is not None:
                meter.record(Usage(failed=1))
            if outcome.refused_form and self._auto and form == "json_schema":
                form, refused = "json_object", f" (json_schema was refused: {outcome.problem})"
                continue  # a different request, not another attempt at the same one
            attempt += 1
            if not outcome.retryable or attempt >= self._max_attempts:
                tries = "not retried" if not outcome.retryable else f"{attempt} attempt(s)"
                raise LLMUnavailableError(
                    f"{self.name} at {self._shown_url}: {outcome.problem} ({tries}){refused}"
                )
            time.sleep(self._delay(attempt, outcome.retry_after))

    def _remember(self, form: Form) -> None:
        with self._lock:
            self._form = form

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff, max_backoff, max_retry_after = self._backoff
        if retry_after is not None:
            return min(max(retry_after, 0.0), max_retry_after)
        return float(min(backoff * 2.0 ** (attempt - 1), max_backoff))

    def _body(
        self,
        conversation: Sequence[ChatMessage],
        form: Form,
        schema_name: str,
        schema_json: dict[str, Any],
        max_tokens: int,
    ) -> dict[str, Any]:
        if form == "json_schema":
            name = _NAME_BAD.sub("_", schema_name)[:64] or "answer"
            spec = {"name": name, "schema": schema_json, "strict": True}
            response_format: dict[str, Any] = {"type": "json_schema", "json_schema": spec}
        else:
            response_format = {"type": "json_object", "schema": schema_json}
        return {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in conversation],
            "temperature": self._temperature,
            "max_tokens": max_tokens,
            "stream": False,
            "response_format": response_format,
        }

    def _attempt(self, body: dict[str, Any], form: Form) -> Reply | _Failure:
        try:
            response = self._client.post(self._url, json=body)
        except httpx.TimeoutException:
            return _Failure(f"no answer within the {self._timeout:g} s timeout", True)
        except httpx.TransportError as exc:
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            return _Failure(f"cannot reach the endpoint ({detail})", True)
        status = response.status_code
        if status < 300:
            return _reply(response)
        message = self._redact(_server_message(response))
        problem = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        refused = (
            form == "json_schema"
            and status in (400, 422, 500)
            and _FORMAT_WORDS.search(message) is not None
        )
        if status in (408, 429) or status >= 500:
            return _Failure(problem, True, _retry_after(response), refused)
        return _Failure(problem, False, None, refused)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _check_arguments(
    base_url: str, model: str, timeout: float, form: str, max_retries: int, max_attempts: int
) -> None:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"invalid LLM base URL {base_url!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"invalid LLM base URL {base_url!r}: need http(s)://host[:port]")
    if not model.strip():
        raise ConfigurationError("the LLM model name is empty")
    if form not in ("auto", "json_schema", "json_object"):
        raise ConfigurationError(f"unknown response_format {form!r}")
    if not timeout > 0 or max_retries < 0 or max_attempts < 1:
        raise ConfigurationError("need timeout > 0, max_retries >= 0 and max_attempts >= 1")


def _reply(response: httpx.Response) -> Reply | _Failure:
    """The answer in a 2xx response, or a retryable failure when it has none."""
    try:
        data = response.json()
        message = data["choices"][0]["message"]
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise TypeError("content is not a string")
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        snippet = _clip(response.text)
        return _Failure(f"HTTP {response.status_code} without choices[0].message ({exc}): "
                        f"{snippet}", True)  # fmt: skip
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    tokens = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    return Reply(content, *tokens)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _server_message(response: httpx.Response) -> str:
    """What the endpoint said about an error: OpenAI's ``{"error": {"message"}}``, FastAPI's
    ``{"detail"}``, or the body's text, on one line and truncated."""
    try:
        data = response.json()
    except ValueError:
        return _clip(response.text)
    found: object = data
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            found = error.get("message", error)
        elif error is not None:
            found = error
        elif "detail" in data:
            found = data["detail"]
        elif "message" in data:
            found = data["message"]
    return _clip(found if isinstance(found, str) else str(found))


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MESSAGE_CHARS else flat[: _MESSAGE_CHARS - 3] + "..."


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), if the response has one."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


# Bounds that the answer is validated against (pydantic, client side) but that are not sent:
# llama.cpp turns a JSON schema into a grammar by unrolling every bounded repetition, and
# maxLength 2000 on one string made a grammar that crashed its server (seen with
# llama-cpp-python 0.3.36); OpenAI's strict mode refuses some of them. An answer outside the
# bounds is still rejected, and retried with the validation error shown to the model.
_UNSENT_BOUNDS = {"maxLength", "minLength"}
_MAX_SENT_ITEMS = 8


def wire_schema(schema: Any) -> Any:
    """``schema`` without string length bounds, and without item bounds above
    ``_MAX_SENT_ITEMS`` (both still checked when the answer is validated)."""
    if isinstance(schema, list):
        return [wire_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _UNSENT_BOUNDS:
            continue
        if key in ("maxItems", "minItems") and isinstance(value, int) and value > _MAX_SENT_ITEMS:
            continue
        out[key] = wire_schema(value)
    return out
