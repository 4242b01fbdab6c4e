"""Who a request acts for: its API key's :class:`~engram.server.tenancy.Principal`, or the open
principal when no key is configured and the server listens on loopback only."""

from __future__ import annotations

from fastapi import Request

from engram import AuthenticationError, Memory
from engram.server.keys import KeyStore
from engram.server.scoped import ScopedMemory
from engram.server.settings import is_loopback
from engram.server.tenancy import OPEN, Principal

__all__ = ["principal_for", "request_key", "scoped_memory"]


def request_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <API key>'")
        return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key is not None and key.strip() else None


def principal_for(
    key: str | None, keys: KeyStore | None, *, host: str, client: str | None
) -> Principal:
    """The principal of a request with ``key`` (None: none given) to a server on ``host``.
    Keyless (the open principal) only while no key has ever been created: revoking the last
    key must not open every tenant's data to loopback clients (all of them, behind a proxy)."""
    if keys is not None and keys.any_created():
        if key is None:
            raise AuthenticationError("this server needs an API key (Authorization: Bearer ...)")
        return keys.authenticate(key)
    if key is not None:
        raise AuthenticationError("this server has no API keys; send none (or create one)")
    if not is_loopback(host) or (client is not None and not is_loopback(client)):
        raise AuthenticationError(
            "no API key is configured, so this server only answers on loopback: "
            "create one with 'engram keys create --tenant NAME'"
        )
    return OPEN


def scoped_memory(request: Request) -> ScopedMemory:
    """The FastAPI dependency of every ``/v1`` route."""
    state = request.app.state
    client = request.client.host if request.client is not None else None
    principal = principal_for(
        request_key(request), state.keys, host=state.settings.host, client=client
    )
    memory: Memory = state.memory
    return ScopedMemory(memory, principal)
