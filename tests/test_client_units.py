"""engram.Client without a server: the table of error bodies, its construction, its
signatures (those of Memory), and its import on the base install."""

from __future__ import annotations

import inspect
import math
import re
import subprocess
import sys
from typing import Any

import pytest

import engram
from engram import (
    AuthenticationError,
    Client,
    ConfigurationError,
    EngramError,
    InvalidInputError,
    Memory,
    NotFoundError,
    PermissionDeniedError,
    ScopeError,
    StoreError,
)

# -- the error table ---------------------------------------------------------------------------


def _body(kind: str, message: Any = "m") -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("status", "body", "expected", "words"),
    [
        (404, _body("NotFoundError", "no record 'x' for this user"), NotFoundError, "^no record"),
        (422, _body("ScopeError"), ScopeError, "^m$"),
        (422, _body("InvalidInputError"), InvalidInputError, "^m$"),
        (409, _body("ConflictError"), engram.ConflictError, "^m$"),
        (503, _body("StoreLockedError"), engram.StoreLockedError, "^m$"),
        (503, _body("EmbeddingError"), engram.EmbeddingError, "^m$"),
        (500, _body("ConfigurationError"), ConfigurationError, "^m$"),
        (501, _body("ConfigurationError"), ConfigurationError, "^m$"),
        (503, _body("LLMUnavailableError"), engram.LLMUnavailableError, "^m$"),
        (502, _body("LLMOutputError"), engram.LLMOutputError, "^m$"),
        (401, _body("AuthenticationError"), AuthenticationError, "^m$"),
        (403, _body("PermissionDeniedError"), PermissionDeniedError, "^m$"),
        (400, _body("MalformedRequest"), InvalidInputError, "HTTP 400 MalformedRequest: m"),
        (413, _body("PayloadTooLarge"), InvalidInputError, "HTTP 413 PayloadTooLarge"),
        (415, _body("UnsupportedMediaType"), InvalidInputError, "415"),
        (504, _body("Timeout"), StoreError, "HTTP 504 Timeout"),
        (503, _body("NotReady"), StoreError, "NotReady"),
        (500, _body("InternalError"), EngramError, "HTTP 500 InternalError"),
        (405, _body("MethodNotAllowed"), EngramError, "405"),
        (500, _body("SomethingNew"), EngramError, "SomethingNew"),
        (502, "<html>bad gateway</html>", StoreError, "HTTP 502 Bad Gateway: <html>bad"),
        (401, "no", AuthenticationError, "HTTP 401"),
        (403, {"detail": "forbidden"}, PermissionDeniedError, "HTTP 403"),
        (404, "<h1>Not Found</h1>", EngramError, "is it an Engram server"),
        (400, _body("NotFoundError", 5), EngramError, "HTTP 400"),
    ],
)  # fmt: skip
def test_error_bodies_map_to_engram_errors(
    status: int, body: Any, expected: type[EngramError], words: str
) -> None:
    import httpx

    from engram.remote import error_of

    if isinstance(body, str):
        response = httpx.Response(status, text=body)
    else:
        response = httpx.Response(status, json=body)
    error = error_of(response, "http://h:1")
    assert type(error) is expected
    assert re.search(words, str(error)), str(error)


# -- construction and signatures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [("localhost:8765", "http://"), ("ftp://host", "http://"), ("http://", "http://"),
     ("http://[::1", "invalid")],
)  # fmt: skip
def test_bad_urls_are_configuration_errors(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words.replace("[", r"\[")):
        Client(url)


@pytest.mark.parametrize("key", ["", " ", "two words", "caf\u00e9", "a\nb", 5])
def test_bad_api_keys_are_configuration_errors(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="api_key"):
        Client("http://127.0.0.1:1", api_key=key)


@pytest.mark.parametrize("timeout", [0, -1, True, "5", math.nan])
def test_bad_timeouts_are_configuration_errors(timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Client("http://127.0.0.1:1", timeout=timeout)


def test_client_imports_without_httpx() -> None:
    """``from engram import Client`` works on the base install; using it names the extra."""
    code = (
        "import sys; sys.modules['httpx'] = None\n"
        "from engram import Client, ConfigurationError\n"
        "try:\n    Client('http://127.0.0.1:1')\n"
        "except ConfigurationError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'engram-memory[client]'" in done.stdout


# Not over HTTP: opening a store, and re-indexing one with another model (an operator's local
# step, after which the server is restarted with that model: docs/embedders.md).
LOCAL_ONLY = {"open", "reembed"}
PUBLIC = sorted(
    name for name, _ in inspect.getmembers(Memory, inspect.isfunction)
    if not name.startswith("_") and name not in LOCAL_ONLY
)  # fmt: skip


@pytest.mark.parametrize("name", [*PUBLIC, "__enter__", "__exit__"])
def test_client_methods_have_memory_signatures(name: str) -> None:
    mine, theirs = (
        inspect.signature(getattr(Client, name)),
        inspect.signature(getattr(Memory, name)),
    )
    if name == "__enter__":
        assert (mine.return_annotation, theirs.return_annotation) == ("Client", "Memory")
        mine, theirs = mine.replace(return_annotation=None), theirs.replace(return_annotation=None)
    assert mine == theirs


def test_client_is_exported() -> None:
    assert "Client" in engram.__all__
    assert engram.Client is Client
