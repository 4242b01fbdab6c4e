"""ASGI middleware of the REST server: a limit on the request body, JSON-only bodies, and a
deadline per request. Each answers with the one error body (:mod:`engram.server.errors`)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engram.server.errors import error_response

__all__ = ["LimitsMiddleware"]

_BODY_METHODS = {"POST", "PUT", "PATCH"}


class _TooLarge(HTTPException):
    """Raised while the body is read. An HTTPException, because FastAPI answers any other
    exception of a body read with 400; the app's handler of HTTPExceptions makes it a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit:,} bytes")


class LimitsMiddleware:
    """Refuse bodies over ``max_body_bytes`` (413, from Content-Length or while reading), bodies
    that are not JSON (415), and answer 504 when a request has not started its response within
    ``timeout`` seconds. A write that finishes after its 504 is still complete, never half-done
    (each one is a transaction); an ``add`` retried after a timeout stores nothing twice."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refuse(scope["method"], headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        started = False
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _TooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.timeout):
                await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._too_large()(scope, receive, send)
        except TimeoutError:
            if not started:
                response = error_response(
                    504, "Timeout", f"the request took longer than {self.timeout:g} s"
                )
                await response(scope, receive, send)

    def _too_large(self) -> Any:
        return error_response(
            413, "PayloadTooLarge", f"the request body exceeds {self.max_body_bytes:,} bytes"
        )

    def _refuse(self, method: str, headers: dict[str, str]) -> Any:
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error_response(400, "MalformedRequest", "Content-Length is not a number")
            if int(length) > self.max_body_bytes:
                return self._too_large()
        if method in _BODY_METHODS:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                return error_response(
                    415, "UnsupportedMediaType",
                    f"the request body must be application/json, not {media or 'untyped'}",
                )  # fmt: skip
        return None
