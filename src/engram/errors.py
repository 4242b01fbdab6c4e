"""Engram's exceptions. Every error Engram raises on purpose is an :class:`EngramError`.

::

    EngramError
     ├── InvalidInputError        bad input at the boundary (empty, wrong type, too large)
     │    └── ScopeError           a read or write without a valid user_id
     ├── NotFoundError             an unknown record id, or one that belongs to another user
     ├── ConfigurationError        incompatible settings (e.g. an embedder whose dimension differs
     │                             from the one the store was created with), missing optional extras
     ├── StoreError                the storage backend failed (the operation was rolled back),
     │    │                        or its file is not Engram's, is damaged, or is read-only
     │    ├── StoreLockedError     another process held the file locked past the timeout
     │    └── ConflictError        a conditional write found the data changed since it was read
     ├── EmbeddingError            the embedder failed or returned malformed vectors
     ├── DataError                 a benchmark or import file is missing or malformed
     └── AccessError               a server refused the request (engram.server, engram.Client)
          ├── AuthenticationError  no API key, or an unknown or revoked one
          └── PermissionDeniedError  the key may not act for this user, or only reads

Another user's record id raises :class:`NotFoundError`, exactly like an unknown id, so that
record ids cannot be used to probe for other users' data.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DataError",
    "EmbeddingError",
    "EngramError",
    "InvalidInputError",
    "LLMError",
    "LLMOutputError",
    "LLMUnavailableError",
    "NotFoundError",
    "PermissionDeniedError",
    "ScopeError",
    "StoreError",
    "StoreLockedError",
]


class EngramError(Exception):
    """Base class of every error Engram raises on purpose."""


class InvalidInputError(EngramError, ValueError):
    """Input rejected at the boundary; nothing was written."""


class ScopeError(InvalidInputError):
    """A read or write without a valid ``user_id``."""


class NotFoundError(EngramError, LookupError):
    """No such record in the caller's scope."""


class ConfigurationError(EngramError):
    """Settings that cannot work together, or a missing optional dependency."""


class StoreError(EngramError):
    """The storage backend failed; the operation was rolled back."""


class ConflictError(StoreError):
    """A conditional write found that what it was prepared from changed meanwhile (another
    writer added to the same session); nothing was written, and trying again is safe."""


class StoreLockedError(StoreError):
    """Another process held the database locked for longer than the store's timeout; retrying
    later may succeed."""


class EmbeddingError(EngramError):
    """The embedder failed or returned malformed output."""


class DataError(EngramError):
    """A data file (import or benchmark) is missing or malformed."""


class AccessError(EngramError):
    """A server refused the request for who made it (see docs/server.md)."""


class AuthenticationError(AccessError):
    """No API key was given where one is needed, or the key is unknown or revoked."""


class PermissionDeniedError(AccessError):
    """The API key is valid but may not do this: another user than its pattern allows, or a
    write with a read-only key."""


class LLMError(EngramError):
    """The LLM could not give a usable answer; what depended on it was not written (the
    verbatim turns always are)."""


class LLMUnavailableError(LLMError):
    """The LLM endpoint timed out, refused the connection or answered with an error status,
    after the bounded retries."""


class LLMOutputError(LLMError):
    """The model's answers were not JSON matching the schema, after the bounded retries."""
