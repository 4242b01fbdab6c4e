"""What every command shares: the :class:`App` context object (settings, output mode, the lazily
opened :class:`~engram.Memory`), the common options and option types.

A command module registers its commands on the ``engram`` group with ``register(group)`` and
uses :data:`pass_app` and :func:`common_options`, so ``--db``, ``--embedder``, ``--embed-cache``,
``--server``, ``--api-key`` and ``--pretty`` work before or after the command name.

With ``--server URL`` (or ``ENGRAM_SERVER``) :meth:`App.memory` is an :class:`~engram.Client` of
that server instead of a local file, so every record, search and write command works against it
unchanged. Commands that only work on local files call :meth:`App.local_only`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from engram import Client, Memory
from engram.config import Settings, make_embedder, make_llm_from
from engram.store.postgres import is_postgres_url
from engram.types import short_repr

__all__ = [
    "LOCAL_OPTIONS",
    "SERVER_OPTIONS",
    "App",
    "agent_option",
    "common_options",
    "extract_option",
    "iso_date",
    "pass_app",
    "session_option",
    "user_option",
]

F = TypeVar("F", bound=Callable[..., Any])

LOCAL_OPTIONS = ("db", "embedder", "embed_cache", "llm_base_url")  # of a local memory
SERVER_OPTIONS = ("server", "api_key")  # the settings of a memory on a server


_FLAG_NAMES = {"llm_base_url": "--llm"}


def _flags(names: tuple[str, ...]) -> str:
    return " and ".join(_FLAG_NAMES.get(name, f"--{name.replace('_', '-')}") for name in names)


@dataclass
class App:
    """The state of one ``engram`` invocation. The memory is opened on first use, and with an
    embedder that loads its model only when it embeds, so reading commands never load one."""

    settings: Settings = field(default_factory=Settings.from_env)
    pretty: bool = False
    explicit: dict[str, Any] = field(default_factory=dict)  # the global options given as flags
    _memory: Memory | Client | None = None

    def memory(self, *, create: bool = False) -> Memory | Client:
        """A :class:`~engram.Client` of the server, if there is one (:meth:`server`); else the
        memory at ``settings.db``, where a missing file is an error unless ``create``."""
        if self._memory is None:
            server = self.server()
            self._memory = self._open(create) if server is None else self._client(server)
        return self._memory

    def server(self) -> str | None:
        """The server URL: ``--server``; else ``ENGRAM_SERVER``, unless a local option (--db,
        --embedder, --embed-cache) is given, which wins over the variable as any option does."""
        local = tuple(name for name in LOCAL_OPTIONS if name in self.explicit)
        if "server" in self.explicit and local:
            raise click.UsageError(
                f"--server cannot be combined with {_flags(local)}: the server has its own "
                "database and embedder"
            )
        return None if local else self.settings.server

    def local_only(self, command: str) -> None:
        """Refuse --server and --api-key for a command that works on local files only (it
        ignores ENGRAM_SERVER and ENGRAM_API_KEY)."""
        given = tuple(name for name in SERVER_OPTIONS if name in self.explicit)
        if given:
            raise click.UsageError(
                f"'engram {command}' works on local files: {_flags(given)} cannot be used with it"
            )

    def _client(self, server: str) -> Client:
        return Client(server, api_key=self.settings.api_key)

    def _open(self, create: bool) -> Memory:
        if "api_key" in self.explicit:
            raise click.UsageError("--api-key goes with --server (or ENGRAM_SERVER)")
        db = self.settings.db
        if not create and db != ":memory:" and not is_postgres_url(db) and not _exists(db):
            raise click.ClickException(
                f"no database at {db!r} (pass --db or set ENGRAM_DB; "
                "'engram add' and 'engram import' create one)"
            )
        embedder = make_embedder(self.settings.embedder, self.settings)
        return Memory.open(db, embedder=embedder, llm=make_llm_from(self.settings))

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    def emit(self, doc: object, pretty: Callable[[], str]) -> None:
        """Write the result: ``doc`` as one JSON document, or ``pretty()`` with ``--pretty``."""
        if self.pretty:
            click.echo(pretty())
        else:
            click.echo(json.dumps(doc, ensure_ascii=False, indent=2))


def _exists(db: str) -> bool:
    try:
        return Path(db).exists()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"cannot open the database {short_repr(db)}: {reason}") from None


pass_app = click.make_pass_decorator(App, ensure=True)


def _set_setting(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or value is False:
        return
    app = ctx.ensure_object(App)
    if param.name == "pretty":
        app.pretty = True
    else:
        app.settings = app.settings.with_(**{str(param.name): value})
        app.explicit[str(param.name)] = value


def common_options(func: F) -> F:
    """``--db``, ``--embedder``, ``--embed-cache``, ``--server``, ``--api-key``, ``--llm``,
    ``--llm-model`` and ``--pretty``, accepted by the group and by every command."""
    options = [
        click.option(
            "--db", metavar="PATH", expose_value=False, callback=_set_setting,
            help="SQLite file (env ENGRAM_DB; default engram.db).",
        ),
        click.option(
            "--embedder", metavar="SPEC", expose_value=False, callback=_set_setting,
            help="bundled | st:NAME_OR_PATH | openai:MODEL | hash[:DIM] (test fake) "
            "(env ENGRAM_EMBEDDER; default bundled).",
        ),
        click.option(
            "--embed-cache", metavar="PATH", expose_value=False, callback=_set_setting,
            help="Keep computed vectors in this SQLite file and reuse them "
            "(env ENGRAM_EMBED_CACHE; default: none).",
        ),
        click.option(
            "--server", metavar="URL", expose_value=False, callback=_set_setting,
            help="Use the Engram server at URL (engram serve) instead of a local file "
            "(env ENGRAM_SERVER).",
        ),
        click.option(
            "--api-key", metavar="KEY", expose_value=False, callback=_set_setting,
            help="The API key for --server (env ENGRAM_API_KEY, which keeps it out of the "
            "process list).",
        ),
        click.option(
            "--llm", "llm_base_url", metavar="URL", expose_value=False, callback=_set_setting,
            help="An OpenAI-compatible LLM endpoint for facts and answers, e.g. "
            "http://127.0.0.1:8080/v1 (env ENGRAM_LLM_BASE_URL; default: none, see docs/llm.md).",
        ),
        click.option(
            "--llm-model", "llm_model", metavar="MODEL", expose_value=False,
            callback=_set_setting, help="The model --llm serves (env ENGRAM_LLM_MODEL).",
        ),
        click.option(
            "--pretty", is_flag=True, expose_value=False, callback=_set_setting,
            help="Print a readable table instead of JSON.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def user_option(*, required: bool = True) -> Callable[[F], F]:
    help_text = "The user whose memory this is." if required else "Only this user."
    return click.option("--user", "user_id", metavar="USER", required=required, help=help_text)


def session_option(help_text: str = "Only this session.") -> Callable[[F], F]:
    return click.option("--session", "session_id", metavar="SESSION", help=help_text)


def agent_option(help_text: str = "Only this agent.") -> Callable[[F], F]:
    return click.option("--agent", "agent_id", metavar="AGENT", help=help_text)


def extract_option() -> Callable[[F], F]:
    return click.option(
        "--extract", type=click.Choice(["sync", "background", "off"]), default=None,
        help="Extract facts with the LLM: now (sync; the default with --llm), later by "
        "'engram worker' (background), or not (off; the default without an LLM).",
    )  # fmt: skip


def iso_date(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An option callback: an ISO 8601 date or date-time (``2024-05-01``,
    ``2024-05-01T09:30:00+02:00``, ``...Z``); without a time zone it means UTC."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time") from None
