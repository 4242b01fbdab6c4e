"""Engram over the network: the REST app factory, its settings and API keys.

Needs the ``server`` extra (``pip install 'engram-memory[server]'``). Run it with
``engram serve`` (REST) or ``engram mcp`` (MCP); docs/server.md and docs/mcp.md.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import pydantic_settings  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    from engram.errors import ConfigurationError

    raise ConfigurationError(
        f"the server needs the 'server' extra ({exc.name} is missing): "
        "pip install 'engram-memory[server]'"
    ) from None

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
