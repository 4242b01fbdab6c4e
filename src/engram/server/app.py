"""The REST app factory: :func:`create_app` wires a :class:`~engram.Memory`, the settings and the
API keys into a FastAPI app with the ``/v1`` routes, the health probes and one error body."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from engram import EngramError, Memory, __version__
from engram.server.errors import (
    SafeJSONResponse,
    engram_error_response,
    error_response,
)
from engram.server.keys import KeyStore
from engram.server.middleware import LimitsMiddleware
from engram.server.routes import router
from engram.server.routes_llm import llm_router
from engram.server.settings import ServerSettings
from engram.server.worker import start_worker
from engram.ui import mount as mount_ui

__all__ = ["create_app", "warm_up"]

log = logging.getLogger("engram.server")

_HTTP_TYPES = {
    400: "MalformedRequest", 401: "AuthenticationError", 403: "PermissionDeniedError",
    404: "NotFoundError", 405: "MethodNotAllowed", 413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}  # fmt: skip


def create_app(
    memory: Memory,
    settings: ServerSettings | None = None,
    *,
    keys: KeyStore | None = None,
    close_memory: bool = False,
) -> FastAPI:
    """A FastAPI app serving ``memory``. ``keys`` defaults to the key file of ``settings``;
    with no key ever created in it the app answers only loopback clients of a loopback server.
    ``close_memory``: close it when the app shuts down (after the requests in flight)."""
    settings = settings or ServerSettings()
    if keys is None and settings.keys_path is not None:
        keys = KeyStore(settings.keys_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        await anyio.to_thread.run_sync(warm_up, memory)
        worker = start_worker(memory, settings.worker_interval)
        app.state.ready = True
        yield
        app.state.ready = False  # uvicorn has finished the requests in flight by now
        if worker is not None and not await anyio.to_thread.run_sync(
            worker.stop, settings.shutdown_timeout
        ):
            log.warning("the worker's job in hand did not finish; it is retried after its lease")
        if close_memory:
            await anyio.to_thread.run_sync(memory.close)

    app = FastAPI(
        title="Engram", version=__version__, lifespan=lifespan,
        description="Long-term memory for LLM agents. Docs: docs/server.md.",
        default_response_class=SafeJSONResponse,
    )  # fmt: skip
    app.state.memory, app.state.settings, app.state.keys = memory, settings, keys
    app.state.ready = False
    app.include_router(router)
    app.include_router(llm_router)
    mount_ui(app)  # the memory browser at /ui: static files, a client of the routes above
    _health(app)
    _error_handlers(app)
    app.add_middleware(
        LimitsMiddleware, max_body_bytes=settings.max_body_bytes, timeout=settings.request_timeout
    )
    return app


_PROBE_USER = "engram-readyz"


def warm_up(memory: Memory) -> None:
    """Load the embedding model before the first request (it takes seconds), so that a ready
    server answers at its usual speed. A model that fails now is logged; requests will say it."""
    try:
        memory.embedder.embed_batch(["warm up"])
    except Exception as exc:
        log.warning("the embedder failed to warm up: %s", exc)


def _health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz(request: Request) -> Any:
        """The store answers and the server takes requests (503 while starting or stopping);
        ``llm``: the model that extracts facts and answers (null: none)."""
        if not request.app.state.ready:
            return error_response(503, "NotReady", "the server is starting or shutting down")
        try:
            request.app.state.memory.stats(user_id=_PROBE_USER)  # one cheap query
        except EngramError as exc:
            return engram_error_response(exc)
        llm = request.app.state.memory.llm
        return {"status": "ready", "llm": None if llm is None else llm.name}


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EngramError)
    async def engram_error(request: Request, exc: EngramError) -> SafeJSONResponse:
        return engram_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> SafeJSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "MalformedRequest", "the request body is not valid JSON")
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in errors
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return error_response(422, "InvalidInputError", f"{where}: {first['msg']}", details=details)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> SafeJSONResponse:
        kind = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        message = str(exc.detail)
        if exc.status_code in (404, 405) and exc.detail in ("Not Found", "Method Not Allowed"):
            # the route, not a record: a wrong base URL must not read as "no such record"
            kind = "NoSuchRoute" if exc.status_code == 404 else kind
            message = f"no route {request.method} {request.url.path}"
            if exc.status_code == 405:
                message = f"{request.url.path} does not take {request.method}"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, kind, message, headers=headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> SafeJSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "InternalError", "an internal error; see the server log")
