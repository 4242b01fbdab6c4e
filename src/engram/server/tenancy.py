"""Who is asking, and what they may touch: a :class:`Principal` per request, and the mapping of a
tenant's user ids to the user ids stored.

A tenant's user ``alice`` is stored as ``<tenant>/alice``. Tenant names are lower-case letters,
digits, ``-`` and ``_`` (no ``/``), so the first ``/`` ends the tenant and two tenants' users can
never map to the same stored id. Without keys (the open, loopback-only mode) user ids are stored
as given, so a server and an embedded :class:`~engram.Memory` on one file see the same users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from engram.errors import InvalidInputError, PermissionDeniedError, ScopeError
from engram.types import MAX_ID_CHARS, id_problem, short_repr

__all__ = ["OPEN", "SEPARATOR", "TENANT_PATTERN", "Principal", "check_tenant"]

SEPARATOR = "/"
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_PATTERN_CHARS = 256


def check_tenant(tenant: object) -> str:
    """``tenant`` if it is a valid tenant name, else InvalidInputError."""
    if not isinstance(tenant, str) or TENANT_PATTERN.fullmatch(tenant) is None:
        raise InvalidInputError(
            f"tenant must be 1-63 lower-case letters, digits, '-' or '_' (starting with a letter "
            f"or digit), got {short_repr(tenant)}"
        )
    return tenant


def check_pattern(pattern: object) -> str:
    """A user pattern (shell-style: ``*``, ``?``, ``[abc]``), matched case-sensitively."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidInputError(f"users pattern must be 1-{MAX_PATTERN_CHARS} characters")
    return pattern


@dataclass(frozen=True)
class Principal:
    """What one request may do. ``tenant`` None is the open mode (no keys configured: loopback
    only, every user, stored ids as given)."""

    tenant: str | None
    users: str = "*"
    read_only: bool = False
    key_id: str | None = None

    @property
    def open(self) -> bool:
        return self.tenant is None

    @property
    def max_user_chars(self) -> int:
        return MAX_ID_CHARS - (0 if self.tenant is None else len(self.tenant) + 1)

    @property
    def stored_prefix(self) -> str:
        """What every stored id of this principal's users starts with ("" in the open mode)."""
        return "" if self.tenant is None else self.tenant + SEPARATOR

    def allows(self, user_id: str) -> bool:
        """Whether the ``users`` pattern lets this principal act for the caller's ``user_id``."""
        return fnmatchcase(user_id, self.users)

    def stored_user(self, user_id: object, *, write: bool = False) -> str:
        """The stored user id for the caller's ``user_id``, if this principal may act for it
        (for a write with ``write``); else ScopeError or PermissionDeniedError."""
        problem = id_problem(user_id)
        if problem is not None:
            raise ScopeError(f"user_id {problem}")
        assert isinstance(user_id, str)  # id_problem checked it
        if len(user_id) > self.max_user_chars:
            raise ScopeError(f"user_id is longer than {self.max_user_chars} characters")
        if not self.allows(user_id):
            raise PermissionDeniedError(
                f"this API key may not act for user {short_repr(user_id)} "
                f"(it is limited to users matching {self.users!r})"
            )
        if write and self.read_only:
            raise PermissionDeniedError("this API key is read-only")
        return self.stored_prefix + user_id

    def public_user(self, stored: str) -> str:
        """The caller's user id for a stored one (the inverse of :meth:`stored_user`)."""
        prefix = self.stored_prefix
        if not stored.startswith(prefix):  # a store bug, never expected: do not reveal it
            raise PermissionDeniedError("a record outside this tenant was about to be returned")
        return stored[len(prefix) :]


OPEN = Principal(tenant=None)
"""The principal of every request when no API key is configured (loopback only)."""
