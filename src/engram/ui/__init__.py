"""The memory browser: static files (one HTML shell, ES modules, one style sheet) served at
``/ui`` by ``engram serve``. The page is a client of the public ``/v1`` REST API, with the same
API keys: nothing here reads the :class:`~engram.Memory` of the app. See docs/ui.md.

:func:`mount` is the one door: ``create_app`` calls it once."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse, Response

__all__ = ["CONTENT_SECURITY_POLICY", "FILES", "mount"]

PREFIX = "/ui"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "pages.js": "text/javascript; charset=utf-8",
    "records.js": "text/javascript; charset=utf-8",
    "stats.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
"""Every file the browser may load, and its media type (nothing else under /ui is served)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
"""Nothing from another host, no inline script or style, no framing."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return files("engram.ui").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_read(name), media_type=FILES[name], headers=_HEADERS)


def _route(name: str) -> Callable[[], Response]:
    def serve() -> Response:
        return _serve(name)

    return serve


def _router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("")
    def shell_redirect() -> RedirectResponse:
        # relative, so that it also works behind a proxy that serves Engram under a path prefix
        return RedirectResponse("ui/", status_code=308, headers=_HEADERS)

    router.add_api_route("/", _route("index.html"), methods=["GET"])
    for name in FILES:
        router.add_api_route(f"/{name}", _route(name), methods=["GET"])
    return router


def mount(app: FastAPI) -> None:
    """Serve the browser at ``/ui/`` (``/ui`` redirects there)."""
    app.include_router(_router())
