"""What every command shares: the :class:`App` context object (settings, output mode, the lazily
opened :class:`~engram.Memory`), the common options and option types.

A command module registers its commands on the ``engram`` group with ``register(group)`` and
uses :data:`pass_app` and :func:`common_options`, so ``--db``, ``--embedder``, ``--embed-cache``
and ``--pretty`` work before or after the command name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from engram import Memory
from engram.config import Settings, make_embedder
from engram.types import short_repr

__all__ = [
    "App",
    "agent_option",
    "common_options",
    "iso_date",
    "pass_app",
    "session_option",
    "user_option",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """The state of one ``engram`` invocation. The memory is opened on first use, and with an
    embedder that loads its model only when it embeds, so reading commands never load one."""

    settings: Settings = field(default_factory=Settings.from_env)
    pretty: bool = False
    explicit: dict[str, Any] = field(default_factory=dict)  # the global options given as flags
    _memory: Memory | None = None

    def memory(self, *, create: bool = False) -> Memory:
        """The memory at ``settings.db``; a missing file is an error unless ``create``."""
        if self._memory is None:
            db = self.settings.db
            if not create and db != ":memory:" and not _exists(db):
                raise click.ClickException(
                    f"no database at {db!r} (pass --db or set ENGRAM_DB; "
                    "'engram add' and 'engram import' create one)"
                )
            embedder = make_embedder(self.settings.embedder, self.settings)
            self._memory = Memory.open(db, embedder=embedder)
        return self._memory

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
    """``--db``, ``--embedder``, ``--embed-cache`` and ``--pretty``, accepted by the group and by
    every command."""
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


def iso_date(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An option callback: an ISO 8601 date or date-time (``2024-05-01``,
    ``2024-05-01T09:30:00+02:00``, ``...Z``); without a time zone it means UTC."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time") from None
