"""The HTTP side of :class:`engram.Client`: requests to the ``/v1`` REST API, answers read with
the server's own wire models (:mod:`engram.server.schemas`), and every failure raised as the
:class:`~engram.EngramError` that :class:`~engram.Memory` would raise. Imported by
``Client.__init__`` only: it needs httpx and pydantic (``pip install 'engram-memory[client]'``).

An error body ``{"error": {"type": T, "message": M}}`` becomes:

=============================================  =================================================
``T``                                          raised
=============================================  =================================================
an :mod:`engram.errors` name (NotFoundError,   that class, with ``M`` as its message (the
ScopeError, InvalidInputError, ConflictError,  server's ``str(exc)``, so the message is the one
StoreLockedError, StoreError, EmbeddingError,  ``Memory`` gives too)
ConfigurationError, AuthenticationError,
PermissionDeniedError, ...)
MalformedRequest (400), PayloadTooLarge        InvalidInputError
(413), UnsupportedMediaType (415)
Timeout (504), NotReady (503)                  StoreError (a timed-out write may still complete)
anything else (InternalError, MethodNotAllowed EngramError, naming the status and type
...)
=============================================  =================================================

An answer that is not an Engram error body (a proxy's HTML page) is classed by its status: 401
AuthenticationError, 403 PermissionDeniedError, 5xx StoreError, else EngramError. A server
that cannot be reached, or does not answer within ``timeout``, is a StoreError naming its URL.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timezone
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from engram import __version__, errors
from engram.errors import (
    AuthenticationError,
    ConfigurationError,
    EngramError,
    InvalidInputError,
    PermissionDeniedError,
    StoreError,
)
from engram.read.config import SearchConfig
from engram.server.schemas import (
    AddResponse,
    DeleteResponse,
    ForgetResponse,
    HistoryResponse,
    HitOut,
    RecordOut,
    RecordPage,
    SearchConfigIn,
    SearchResponse,
    SessionSearchResponse,
    StatsOut,
    UserPage,
    encode_cursor,
)
from engram.server.schemas_llm import AnswerOut, ProcessReportOut
from engram.types import (
    Answer,
    HistoryEvent,
    Hit,
    MemoryRecord,
    ProcessReport,
    RecordFilter,
    SessionHit,
    StoreStats,
)

__all__ = ["Remote", "error_of"]

M = TypeVar("M", bound=BaseModel)

_BY_TYPE: dict[str, type[EngramError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, EngramError)
}
_SERVER_TYPES: dict[str, type[EngramError]] = {
    "MalformedRequest": InvalidInputError,
    "PayloadTooLarge": InvalidInputError,
    "UnsupportedMediaType": InvalidInputError,
    "Timeout": StoreError,
    "NotReady": StoreError,
}


def error_of(response: httpx.Response, url: str) -> EngramError:
    """The exception for an error answer of the server at ``url``."""
    status = response.status_code
    try:
        error = response.json()["error"]
        kind, message = error["type"], error["message"]
        if not isinstance(kind, str) or not isinstance(message, str):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        excerpt = " ".join(response.text[:200].split())
        what = f"the server at {url} answered HTTP {status} {response.reason_phrase}"
        if status == 401:
            return AuthenticationError(f"{what}: {excerpt}")
        if status == 403:
            return PermissionDeniedError(f"{what}: {excerpt}")
        if status >= 500:
            return StoreError(f"{what}: {excerpt}")
        return EngramError(f"{what} (is it an Engram server?): {excerpt}")
    if kind in _BY_TYPE:
        return _BY_TYPE[kind](message)
    cls = _SERVER_TYPES.get(kind, EngramError)
    return cls(f"the server at {url} answered HTTP {status} {kind}: {message}")


def _aware(value: datetime) -> datetime:
    """A datetime with a :class:`datetime.timezone` (UTC itself for offset 0), as Memory gives
    them, instead of pydantic's own tzinfo class; naive (never sent) means UTC."""
    offset = value.utcoffset()
    return value.replace(tzinfo=UTC if offset is None else timezone(offset))


def _record(out: RecordOut) -> MemoryRecord:
    record = out.to_record()
    return replace(
        record, timestamp=_aware(record.timestamp), created_at=_aware(record.created_at),
        valid_from=None if record.valid_from is None else _aware(record.valid_from),
        valid_to=None if record.valid_to is None else _aware(record.valid_to),
        expired_at=None if record.expired_at is None else _aware(record.expired_at),
    )  # fmt: skip


def _hit(out: HitOut) -> Hit:
    return replace(out.to_hit(), record=_record(out.record))


def _path_id(record_id: str) -> str:
    """``record_id`` as one path segment ('.' too: a literal '.' or '..' segment would be
    resolved away by URL normalisation; the server decodes %2E back)."""
    return quote(record_id, safe="").replace(".", "%2E")


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _config(config: SearchConfig | str | None) -> object:
    if not isinstance(config, SearchConfig):
        return config  # a preset name (checked by the caller) or None
    try:
        return SearchConfigIn.of(config).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"config: {where}: {first['msg']}") from None


class Remote:
    """One HTTP connection pool to an Engram server and its ``/v1`` operations. The arguments
    are checked by :class:`~engram.Client` before they get here."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout: float,
        transport: httpx.BaseTransport | None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigurationError(f"invalid server URL {base_url!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"the server URL must be http://HOST[:PORT] or https://..., got {base_url!r}"
            )
        self.url = str(url).rstrip("/")
        self.timeout = timeout
        headers = {"user-agent": f"engram-client/{__version__}", "accept": "application/json"}
        if api_key is not None:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> M:
        """Send one request; the answer as ``model``, or the error it means raised."""
        if self._closed:
            raise StoreError(f"this client of {self.url} is closed")
        content, headers = None, None
        if body is not None:
            try:
                content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
            except ValueError as exc:  # NaN or infinity in a search config
                raise InvalidInputError(f"the request cannot be sent as JSON: {exc}") from None
            headers = {"content-type": "application/json"}
        try:
            response = self._http.request(
                method, path, params=_given(params or {}), content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise StoreError(
                f"the server at {self.url} did not answer within {self.timeout:g} s ({exc}); "
                "a write may still have completed (adding the same messages again is safe)"
            ) from exc
        except httpx.TransportError as exc:
            raise StoreError(f"cannot reach the server at {self.url}: {exc}") from exc
        if response.is_error:
            raise error_of(response, self.url)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise EngramError(
                f"unexpected answer from {self.url}{path} (is it an Engram server of this "
                f"version?): {exc.error_count()} problems, first: {exc.errors()[0]['msg']}"
            ) from None

    # -- the operations -------------------------------------------------------------------------

    def add(self, body: Mapping[str, Any]) -> builtins.list[MemoryRecord]:
        answer = self.call("POST", "/v1/messages", AddResponse, body=_given(body))
        return [_record(r) for r in answer.records]

    def update(self, record_id: str, text: str, user_id: str) -> MemoryRecord:
        body = {"user_id": user_id, "text": text}
        return _record(
            self.call("PATCH", f"/v1/records/{_path_id(record_id)}", RecordOut, body=body)
        )

    def delete(self, record_id: str, user_id: str) -> builtins.list[str]:
        path = f"/v1/records/{_path_id(record_id)}"
        return self.call("DELETE", path, DeleteResponse, params={"user_id": user_id}).deleted

    def forget(self, user_id: str, session_id: str | None) -> int:
        body = _given({"user_id": user_id, "session_id": session_id})
        return self.call("POST", "/v1/forget", ForgetResponse, body=body).forgotten

    def get(self, record_id: str, user_id: str) -> MemoryRecord:
        path = f"/v1/records/{_path_id(record_id)}"
        return _record(self.call("GET", path, RecordOut, params={"user_id": user_id}))

    def page(
        self, where: RecordFilter, *, limit: int, after: MemoryRecord | None, as_of: str | None
    ) -> builtins.list[MemoryRecord]:
        """One page of ``GET /v1/records``: the records after ``after`` (None: from the start)."""
        params = {
            "user_id": where.user_id, "session_id": where.session_id, "agent_id": where.agent_id,
            "kind": [k.value for k in where.kinds], "limit": limit,
            "cursor": None if after is None else encode_cursor(after), "as_of": as_of,
        }  # fmt: skip
        return [
            _record(r) for r in self.call("GET", "/v1/records", RecordPage, params=params).records
        ]

    def history(self, record_id: str, user_id: str) -> builtins.list[HistoryEvent]:
        path = f"/v1/records/{_path_id(record_id)}/history"
        events = self.call("GET", path, HistoryResponse, params={"user_id": user_id}).events
        return [replace(e.to_event(), at=_aware(e.at)) for e in events]

    def search(
        self, body: Mapping[str, Any], config: SearchConfig | str | None, *, facts: bool = False
    ) -> builtins.list[Hit]:
        request = _given({**body, "config": _config(config)})
        path = "/v1/search/facts" if facts else "/v1/search"
        return [_hit(h) for h in self.call("POST", path, SearchResponse, body=request).hits]

    def answer(self, body: Mapping[str, Any], config: SearchConfig | str | None) -> Answer:
        request = _given({**body, "config": _config(config)})
        return self.call("POST", "/v1/answer", AnswerOut, body=request).to_answer(_record)

    def process(self, limit: int, user_id: str | None) -> ProcessReport:
        body = _given({"limit": limit, "user_id": user_id})
        return self.call("POST", "/v1/jobs/process", ProcessReportOut, body=body).to_report()

    def search_sessions(
        self, body: Mapping[str, Any], config: SearchConfig | str | None
    ) -> builtins.list[SessionHit]:
        request = _given({**body, "config": _config(config)})
        answer = self.call("POST", "/v1/search/sessions", SessionSearchResponse, body=request)
        return [
            SessionHit(s.session_id, s.score, tuple(_hit(h) for h in s.hits))
            for s in answer.sessions
        ]

    def stats(self, user_id: str | None) -> StoreStats:
        return self.call("GET", "/v1/stats", StatsOut, params={"user_id": user_id}).to_stats()

    def users(self, prefix: str, limit: int, after: str | None) -> builtins.list[str]:
        params = {"prefix": prefix or None, "limit": limit, "after": after}
        return self.call("GET", "/v1/users", UserPage, params=params).users
