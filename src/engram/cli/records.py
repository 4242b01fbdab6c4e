"""Commands on stored records: ``list``, ``get``, ``delete``, ``forget``, ``history``, ``stats``,
``users``.
None of them embeds anything, so none loads an embedding model."""

from __future__ import annotations

from datetime import datetime

import click

from engram.cli.app import (
    App,
    agent_option,
    common_options,
    iso_date,
    pass_app,
    session_option,
    user_option,
)
from engram.cli.output import (
    event_json,
    events_table,
    record_json,
    record_table,
    records_table,
    stats_json,
    stats_table,
)

__all__ = ["register"]

KINDS = ("turn", "round", "window", "sentence", "fact")


@click.command("list")
@user_option()
@session_option()
@agent_option()
@click.option(
    "--kind", "kinds", type=click.Choice(KINDS), multiple=True,
    help="Which records: turn (messages; the default), the index keys (round, window, "
    "sentence) or fact (extracted by the LLM). Repeat for several.",
)  # fmt: skip
@click.option(
    "--as-of", "as_of", metavar="ISO_DATE", callback=iso_date,
    help="Only what was part of memory then: facts true then, records said by then.",
)  # fmt: skip
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most 1000."
)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@common_options
@pass_app
def list_command(
    app: App,
    user_id: str,
    session_id: str | None,
    agent_id: str | None,
    kinds: tuple[str, ...],
    limit: int,
    offset: int,
    as_of: datetime | None,
) -> None:
    """List a user's records in conversation order."""
    records = app.memory().list(
        user_id=user_id, session_id=session_id, agent_id=agent_id, kinds=kinds or ("turn",),
        limit=limit, offset=offset, as_of=as_of,
    )  # fmt: skip
    app.emit([record_json(r) for r in records], lambda: records_table(records))


@click.command("get")
@click.argument("record_id", metavar="ID")
@user_option()
@common_options
@pass_app
def get_command(app: App, record_id: str, user_id: str) -> None:
    """Show one record."""
    record = app.memory().get(record_id, user_id=user_id)
    app.emit(record_json(record), lambda: record_table(record))


@click.command("delete")
@click.argument("record_id", metavar="ID")
@user_option()
@common_options
@pass_app
def delete_command(app: App, record_id: str, user_id: str) -> None:
    """Delete one record (and the round keys built from it); prints the deleted ids."""
    deleted = app.memory().delete(record_id, user_id=user_id)
    app.emit({"deleted": deleted}, lambda: "\n".join(f"deleted {i}" for i in deleted))


@click.command("forget")
@user_option()
@session_option("Forget only this session.")
@click.option("--yes", is_flag=True, help="Really delete; required.")
@common_options
@pass_app
def forget_command(app: App, user_id: str, session_id: str | None, yes: bool) -> None:
    """Delete everything of a user (or of one session), history included. Needs --yes."""
    what = f"user {user_id!r}" + (f", session {session_id!r}" if session_id else "")
    if not yes:
        raise click.UsageError(f"this deletes every record of {what}; add --yes to do it")
    count = app.memory().forget(user_id=user_id, session_id=session_id)
    summary = {"user_id": user_id, "session_id": session_id, "deleted": count}
    app.emit(summary, lambda: f"deleted {count} records of {what}")


@click.command("history")
@click.argument("record_id", metavar="ID")
@user_option()
@common_options
@pass_app
def history_command(app: App, record_id: str, user_id: str) -> None:
    """Show a record's audit trail (ADD, UPDATE, DELETE events), oldest first."""
    events = app.memory().history(record_id, user_id=user_id)
    app.emit([event_json(e) for e in events], lambda: events_table(events))


@click.command("stats")
@user_option(required=False)
@common_options
@pass_app
def stats_command(app: App, user_id: str | None) -> None:
    """Count records, users and sessions (of one user, or of the whole database)."""
    stats = app.memory().stats(user_id=user_id)
    app.emit(stats_json(stats), lambda: stats_table(stats))


@click.command("users")
@click.option("--prefix", default="", metavar="P", help="Only user ids that start with P.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most 1000."
)
@click.option("--after", metavar="ID", help="Only user ids after ID (the last of a page).")
@common_options
@pass_app
def users_command(app: App, prefix: str, limit: int, after: str | None) -> None:
    """List the users that have records, in code point order."""
    users = app.memory().users(prefix=prefix, limit=limit, after=after)
    app.emit(users, lambda: "\n".join(users))


def register(group: click.Group) -> None:
    for command in (
        list_command,
        get_command,
        delete_command,
        forget_command,
        history_command,
        stats_command,
        users_command,
    ):
        group.add_command(command)
