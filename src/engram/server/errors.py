"""One error body for every failure, ``{"error": {"type": ..., "message": ...}}``, and the HTTP
status of each :class:`~engram.EngramError` subclass.

=========================  ======  ==========================================================
error type                 status  when
=========================  ======  ==========================================================
InvalidInputError          422     bad input (ScopeError: a bad user_id; a bad request body)
ScopeError                 422
MalformedRequest           400     the body is not JSON
AuthenticationError        401     no key where one is needed; an unknown or revoked key
PermissionDeniedError      403     the key may not act for this user, or may only read
NotFoundError              404     no such record for this user
NoSuchRoute                404     no such route (a wrong base URL or proxy prefix)
MethodNotAllowed           405
ConflictError              409     a concurrent write kept winning; retrying is safe
PayloadTooLarge            413     the body exceeds ``max_body_bytes``
UnsupportedMediaType       415     a body that is not ``application/json``
StoreLockedError           503     another process held the database; retry (Retry-After)
StoreError                 503     the store failed; nothing was written
EmbeddingError             503     the embedding model failed
Timeout                    504     the request took longer than ``request_timeout``
LLMUnavailableError        503     the server's LLM endpoint failed (Retry-After)
LLMOutputError             502     the server's LLM gave no usable answer
ConfigurationError         501     (type ConfigurationError) this server has no LLM
ConfigurationError         500     the server is misconfigured
InternalError              500     a bug in Engram (logged with its traceback)
=========================  ======  ==========================================================
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.responses import JSONResponse

from engram import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    EmbeddingError,
    EngramError,
    InvalidInputError,
    LLMError,
    LLMOutputError,
    LLMUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    StoreLockedError,
)

__all__ = ["NeedsLLMError", "SafeJSONResponse", "error_response", "redact_urls", "status_of"]

log = logging.getLogger("engram.server")


class NeedsLLMError(ConfigurationError):
    """The :class:`~engram.ConfigurationError` of a call that needs an LLM, on a server that has
    none: 501 Not Implemented, sent as type ``ConfigurationError`` (the class ``Memory``
    raises, which :class:`engram.Client` raises again)."""


_URL = re.compile(r"https?://[^\s'\")]+")


def redact_urls(text: str) -> str:
    """``text`` without URLs: an LLM error names the server's endpoint, which is no business of
    the client (the server's log keeps the whole message)."""
    return _URL.sub("<the LLM endpoint>", text)


LLM_RETRY_AFTER = 5  # seconds: an LLM endpoint that failed its bounded retries needs a while

# Most specific first: the first class an error is an instance of gives its status.
_STATUS: tuple[tuple[type[EngramError], int], ...] = (
    (NeedsLLMError, 501),
    (InvalidInputError, 422),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (StoreLockedError, 503),
    (StoreError, 503),
    (EmbeddingError, 503),
    (LLMUnavailableError, 503),
    (LLMOutputError, 502),
    (LLMError, 502),
)


def status_of(exc: EngramError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500  # ConfigurationError, DataError: nothing the client did


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: text that cannot be UTF-8 (a lone surrogate echoed back in an
    error message) is written as a ``\\uXXXX`` escape instead of failing the response."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(
                content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(
    status: int,
    kind: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> SafeJSONResponse:
    error: dict[str, Any] = {"type": kind, "message": message}
    if details is not None:
        error["details"] = details
    return SafeJSONResponse({"error": error}, status_code=status, headers=headers)


def engram_error_response(exc: EngramError) -> SafeJSONResponse:
    status = status_of(exc)
    kind, message = type(exc).__name__, str(exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="engram"'}
    if isinstance(exc, LLMError):
        message = redact_urls(message)
        if status == 503:
            headers = {"Retry-After": str(LLM_RETRY_AFTER)}
    if isinstance(exc, NeedsLLMError):
        kind = "ConfigurationError"  # a client's request, not the server's failure: not logged
    elif status >= 500:
        log.error("%s: %s", kind, exc)
    return error_response(status, kind, message, headers=headers)
