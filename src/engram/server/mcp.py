"""``engram mcp``: the memory as an MCP server (the official SDK's :class:`MCPServer`), over stdio
or streamable HTTP. docs/mcp.md describes the tools, the settings and the host configurations.

- **Scope.** Every tool acts for ``settings.mcp_user`` (``--user``, ``ENGRAM_MCP_USER``, the
  config file's ``mcp_user``; default ``default``); with ``mcp_allow_any_user`` a call may name
  another (a ``user_id`` argument that the schemas have only then). The database defaults to a
  per-user file (:func:`~engram.server.settings.user_data_db`), never the working directory,
  which an MCP host chooses: so the same memory answers after every restart.
- **Who.** Over stdio the local user owns the file: the open principal. Over HTTP the REST
  server's rules hold: with active API keys every request needs ``Authorization: Bearer <key>``
  and acts as that key (its tenant, users pattern, read-only flag); without keys only loopback.
  The principal is taken from each request, and each tool call scopes the memory through
  :class:`~engram.server.scoped.ScopedMemory`, the one place that maps user ids.
- **Errors.** An :class:`~engram.EngramError` is a tool error with its one-line message
  (:func:`as_tool`); so is an argument a tool does not take (:class:`RefuseUnknownArguments`),
  which the SDK would otherwise drop without a word.
- **Output.** stdout is the stdio transport's channel: everything else goes to stderr.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from engram import AuthenticationError, ConfigurationError, EngramError, Memory, __version__
from engram.server.app import warm_up
from engram.server.auth import principal_for, request_key
from engram.server.errors import engram_error_response
from engram.server.keys import KeyStore
from engram.server.mcp_tools import LLM_TOOLS, TOOLS, MemoryTools, PrincipalSource
from engram.server.run import close_memory, listen, open_memory, run_uvicorn
from engram.server.settings import ServerSettings, user_data_db
from engram.server.tenancy import OPEN, Principal
from engram.store.postgres import display_db, is_postgres_url

__all__ = [
    "MCP_PATH",
    "HttpFront",
    "RefuseUnknownArguments",
    "as_tool",
    "create_mcp",
    "http_principal",
    "load_mcp_settings",
    "mcp_http_app",
    "run_mcp",
    "tool_arguments",
]

log = logging.getLogger("engram.server")

MCP_PATH = "/mcp"
_PROBE_USER = "engram-readyz"

INSTRUCTIONS = """\
Engram is this user's long-term memory, kept across conversations. Call search_memory before \
answering anything that may depend on what the user said or decided earlier (facts about them, \
preferences, plans, people, past conversations), and remember durable facts and decisions as \
self-contained statements as they come up. Do not store secrets or one-off chit-chat. Results \
carry record ids: delete_memory removes a memory that is wrong or that the user wants gone."""


def load_mcp_settings(config: str | None = None, **flags: Any) -> ServerSettings:
    """:meth:`ServerSettings.load`, except that with no database configured (no ``--db``, no
    ``ENGRAM_DB``, none in the config file) the database is the per-user data file, whose
    folder is created."""
    settings = ServerSettings.load(config, **flags)
    if "db" in settings.model_fields_set:
        return settings
    path = user_data_db()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create {str(path.parent)!r}: {exc.strerror}") from None
    return settings.model_copy(update={"db": str(path)})


# -- the tools as the SDK sees them -------------------------------------------------------------


def _one_line(exc: EngramError) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def as_tool(method: Callable[..., Any], *, with_user: bool) -> Callable[..., Any]:
    """``method`` as the SDK should see it: an EngramError becomes a :class:`ToolError` (an
    ``isError`` result with its message, not the SDK's generic crash report); without
    ``with_user`` the ``user_id`` parameter is gone from the signature, hence from the schema."""
    signature = inspect.signature(method, eval_str=True)
    params = [p for p in signature.parameters.values() if with_user or p.name != "user_id"]

    def call(**kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except EngramError as exc:
            raise ToolError(_one_line(exc)) from exc

    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = inspect.getdoc(method)
    call.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params}
    call.__annotations__["return"] = signature.return_annotation
    return call


def tool_arguments(fn: Callable[..., Any]) -> frozenset[str]:
    """The arguments a model may pass to ``fn`` (all its parameters but the Context)."""
    params = inspect.signature(fn, eval_str=True).parameters.values()
    return frozenset(p.name for p in params if not _is_context(p.annotation))


def _is_context(annotation: object) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, Context)


class RefuseUnknownArguments:
    """Server middleware: a tool call with an argument the tool does not take is a tool error.
    (The SDK drops unknown arguments silently, so a ``user_id`` named where the settings allow
    none would act for the configured user instead, and report success.)"""

    def __init__(self) -> None:
        self.allowed: dict[str, frozenset[str]] = {}  # by tool name, filled by create_mcp

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        params = ctx.params
        if ctx.method == "tools/call" and isinstance(params, Mapping):
            name = params.get("name")
            allowed = self.allowed.get(name) if isinstance(name, str) else None
            arguments = params.get("arguments")
            if allowed is not None and isinstance(arguments, Mapping):
                unknown = sorted(str(k) for k in arguments if k not in allowed)
                if unknown:
                    return _unknown(str(name), unknown, allowed)
        return await call_next(ctx)


def _unknown(tool: str, unknown: list[str], allowed: frozenset[str]) -> CallToolResult:
    why = f"{tool} takes no argument {', '.join(map(repr, unknown))} (it takes {sorted(allowed)})"
    if "user_id" in unknown:
        why += "; this server acts for its configured user only, so nothing was done"
    text = f"Error executing tool {tool}: InvalidInputError: {why}"
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def create_mcp(
    memory: Memory, settings: ServerSettings, principal_source: PrincipalSource
) -> MCPServer:
    """An MCP server with the memory tools of :mod:`engram.server.mcp_tools`; each call acts
    for ``principal_source(ctx)`` and the user the settings give."""
    strict = RefuseUnknownArguments()
    server: MCPServer = MCPServer(
        "engram", title="Engram memory", version=__version__, instructions=INSTRUCTIONS,
        log_level="WARNING", middleware=[strict],
    )  # fmt: skip
    tools = MemoryTools(memory, settings, principal_source)
    for name, hints in TOOLS.items():
        if name == "forget_all_memories" and not settings.mcp_allow_forget:
            continue
        if name in LLM_TOOLS and memory.llm is None:
            continue
        fn = as_tool(getattr(tools, name), with_user=settings.mcp_allow_any_user)
        strict.allowed[name] = tool_arguments(fn)
        server.add_tool(
            fn, name=name, title=hints.title, description=fn.__doc__, annotations=hints,
            structured_output=True,
        )  # fmt: skip
    return server


def stdio_principal(ctx: Context[Any, Any]) -> Principal:
    """Over stdio the local user, who owns the database file, may do everything."""
    return OPEN


def http_principal(keys: KeyStore | None, host: str) -> PrincipalSource:
    """The principal of the HTTP request that carried a tool call (see
    :func:`engram.server.auth.principal_for`)."""

    def principal(ctx: Context[Any, Any]) -> Principal:
        request = ctx.request_context.request
        if not isinstance(request, Request):
            raise AuthenticationError("this tool call came without its HTTP request")
        return _request_principal(request, keys, host)

    return principal


def _request_principal(request: Request, keys: KeyStore | None, host: str) -> Principal:
    client = request.client.host if request.client is not None else None
    return principal_for(request_key(request), keys, host=host, client=client)


class HttpFront:
    """What stands before the MCP endpoint: ``/healthz`` and ``/readyz`` (open, like the REST
    server's), and a gate that refuses every other request the REST server would refuse (a
    missing, unknown or revoked key; a key where none exist; a client beyond loopback without
    keys) with the REST server's error body, before the MCP layer sees it."""

    def __init__(self, app: ASGIApp, memory: Memory, keys: KeyStore | None, host: str) -> None:
        self.app, self.memory, self.keys, self.host = app, memory, keys, host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # the lifespan, which runs the MCP sessions
            return
        response: Response | None = None
        if scope["path"] == "/healthz":
            response = JSONResponse({"status": "ok"})
        elif scope["path"] == "/readyz":
            response = await self._ready()
        else:
            try:
                _request_principal(Request(scope), self.keys, self.host)
            except EngramError as exc:
                response = engram_error_response(exc)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    async def _ready(self) -> Response:
        try:
            await anyio.to_thread.run_sync(lambda: self.memory.stats(user_id=_PROBE_USER))
        except EngramError as exc:
            return engram_error_response(exc)
        return JSONResponse({"status": "ready"})


def mcp_http_app(
    server: MCPServer, memory: Memory, settings: ServerSettings, keys: KeyStore | None
) -> ASGIApp:
    """The streamable HTTP app: the MCP endpoint at ``/mcp`` (stateless: every request carries
    its key and stands alone; JSON responses) behind an :class:`HttpFront`."""
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True,
        max_request_body_size=settings.max_body_bytes, host=settings.host,
    )  # fmt: skip
    return HttpFront(app, memory, keys, settings.host)


def _say(text: str) -> None:
    print(f"engram: {text}", file=sys.stderr, flush=True)


def _where(settings: ServerSettings) -> str:
    if is_postgres_url(settings.db):
        return f"user {settings.mcp_user!r}, database {display_db(settings.db)}"
    db = settings.db if settings.db == ":memory:" else str(Path(settings.db).resolve())
    return f"user {settings.mcp_user!r}, database {db}"


def run_mcp(settings: ServerSettings) -> None:
    """Serve MCP over ``settings.mcp_transport`` until the client hangs up (stdio) or a TERM or
    INT signal (HTTP); then close the store."""
    if settings.mcp_transport == "http":
        _run_http(settings)
        return
    memory = open_memory(settings)
    try:
        warm_up(memory)
        server = create_mcp(memory, settings, stdio_principal)
        _say(f"MCP over stdio ({_where(settings)})")
        anyio.run(server.run_stdio_async)
    finally:
        close_memory(memory)


def _run_http(settings: ServerSettings) -> None:
    listener = listen(settings, settings.mcp_port)
    memory, keys = listener.memory, listener.keys
    server = create_mcp(memory, settings, http_principal(keys, settings.host))
    app = mcp_http_app(server, memory, settings, keys)
    _say(f"serving {listener.url(MCP_PATH)} (MCP; {_where(settings)}; {listener.mode})")
    run_uvicorn(app, listener.sock, settings, memory)
