"""Engram over the network: the REST app factory, its settings and API keys.

Needs the ``server`` extra (``pip install 'engram-memory[server]'``). Run it with
``engram serve`` (REST) or ``engram mcp`` (MCP); docs/server.md and docs/mcp.md.

The names below are imported on first use, so that :mod:`engram.server.schemas` (the wire
format, which :class:`engram.Client` shares) needs only pydantic, not FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engram.server.app import create_app
    from engram.server.keys import ApiKey, KeyStore
    from engram.server.run import open_memory, serve
    from engram.server.scoped import ScopedMemory
    from engram.server.settings import ServerSettings
    from engram.server.tenancy import Principal

__all__ = [
    "ApiKey",
    "KeyStore",
    "Principal",
    "ScopedMemory",
    "ServerSettings",
    "create_app",
    "open_memory",
    "serve",
]

_HOMES = {
    "ApiKey": "keys", "KeyStore": "keys", "Principal": "tenancy", "ScopedMemory": "scoped",
    "ServerSettings": "settings", "create_app": "app", "open_memory": "run", "serve": "run",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'engram.server' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"engram.server.{home}")
    except ImportError as exc:
        from engram.errors import ConfigurationError

        raise ConfigurationError(
            f"the server needs the 'server' extra ({exc.name} is missing): "
            "pip install 'engram-memory[server]'"
        ) from None
    return getattr(module, name)
