"""``engram add`` and ``engram import``: the commands that write (and create the database)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from engram import Client, EngramError, Memory, Scope
from engram.cli.app import (
    App,
    agent_option,
    common_options,
    extract_option,
    iso_date,
    pass_app,
    session_option,
    user_option,
)
from engram.cli.inputs import Conversation, ConversationFile, read_messages
from engram.cli.output import mapping_table, record_json, records_table

__all__ = ["register"]


def _messages(
    role: str | None, name: str | None, content: str | None, file: str | None
) -> tuple[list[Any], str]:
    """The messages to add and a label for error messages."""
    if (content is None) == (file is None):
        raise click.UsageError("give exactly one of --content TEXT, --file PATH or - (stdin)")
    if file is not None:
        if role is not None or name is not None:
            raise click.UsageError("--role and --name go with --content, not with a file")
        return read_messages(file), "<stdin>" if file == "-" else file
    message: dict[str, Any] = {"role": role or "user", "content": content}
    if name is not None:
        message["name"] = name
    return [message], "--content"


@click.command("add")
@click.argument("source", metavar="[FILE | -]", required=False)
@user_option()
@session_option("The session the messages belong to (default: 'default').")
@agent_option("The agent taking part in the conversation.")
@click.option(
    "--date",
    metavar="ISO_DATE",
    callback=iso_date,
    help="The session's date, for messages without a timestamp.",
)
@click.option("--role", metavar="ROLE", help="The role of a --content message (default: user).")
@click.option("--name", metavar="NAME", help="The speaker's name for a --content message.")
@click.option("--content", metavar="TEXT", help="The text of one message to add.")
@click.option(
    "--file", "file", metavar="PATH", help="A JSON list of messages to add ('-' for stdin)."
)
@extract_option()
@common_options
@pass_app
def add_command(
    app: App,
    source: str | None,
    user_id: str,
    session_id: str | None,
    agent_id: str | None,
    date: datetime | None,
    role: str | None,
    name: str | None,
    content: str | None,
    file: str | None,
    extract: str | None,
) -> None:
    """Add messages to a user's memory, verbatim, in one transaction.

    Either one message (--content, with --role and --name), or a JSON list of
    {"role", "content", "id"?, "name"?, "timestamp"?, "metadata"?} objects from --file PATH,
    FILE or - (standard input). Prints the stored turn records. Adding a message that is
    already stored (same id, or same role, content and timestamp) stores nothing new.
    """
    if source is not None and file is not None:
        raise click.UsageError("give the messages file once: --file PATH or FILE")
    messages, label = _messages(role, name, content, file or source)
    Scope(user_id, agent_id, session_id)  # so that a bad id is not blamed on the messages
    memory = app.memory(create=True)
    try:
        records = memory.add(
            messages, user_id=user_id, session_id=session_id, session_date=date,
            agent_id=agent_id, extract=extract,  # type: ignore[arg-type]  # a checked choice
        )  # fmt: skip
    except EngramError as exc:
        raise type(exc)(f"{label}: {exc}") from exc
    app.emit([record_json(r) for r in records], lambda: records_table(records))


def _add_conversation(
    app: App, conversation: Conversation, before: dict[str, int], extract: str | None
) -> int:
    """Add one conversation; ``before`` gets the turn count of a user seen for the first time."""
    user_id = conversation.user_id
    try:
        memory = app.memory(create=True)
        if user_id not in before:
            before[user_id] = _turns(memory, user_id)
        records = memory.add(
            conversation.messages,  # type: ignore[arg-type]  # Memory.add checks it
            user_id=user_id,
            session_id=conversation.session_id,
            session_date=conversation.session_date,
            agent_id=conversation.agent_id,
            extract=extract,  # type: ignore[arg-type]  # a checked choice
        )
    except EngramError as exc:
        raise type(exc)(f"{conversation.where}: {exc}") from exc
    return len(records)


def _turns(memory: Memory | Client, user_id: str) -> int:
    """A user's turns (counted per user: a server's API key may not count the whole store)."""
    return memory.stats(user_id=user_id).records.get("turn", 0)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Interrupted(click.ClickException):
    exit_code = 130


@click.command("import")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@user_option(required=False)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@extract_option()
@common_options
@pass_app
def import_command(
    app: App, paths: tuple[str, ...], user_id: str | None, quiet: bool, extract: str | None
) -> None:
    """Import conversations from JSON or JSONL files ('-' for stdin).

    Each conversation is {"user_id", "session_id", "session_date"?, "agent_id"?, "messages"},
    one per line (JSONL) or a JSON list of them; --user gives (or overrides) the user_id.
    Each conversation is added in one transaction. A bad one stops the import; those before
    it stay imported. Importing the same file again adds nothing new.
    """
    from tqdm import tqdm

    sources = [ConversationFile.read(path, user_id=user_id) for path in paths]
    show = not quiet and sys.stderr.isatty()
    before: dict[str, int] = {}  # each user's turns before the import
    done = {"files": 0, "conversations": 0, "messages": 0}
    try:
        for source in sources:
            with tqdm(
                total=len(source), desc=source.label, unit="conv", file=sys.stderr,
                disable=not show, leave=False,
            ) as bar:  # fmt: skip
                for conversation in source:
                    done["messages"] += _add_conversation(app, conversation, before, extract)
                    done["conversations"] += 1
                    bar.update(1)
            done["files"] += 1
    except (EngramError, KeyboardInterrupt) as exc:
        so_far = f"{_n(done['conversations'], 'conversation')} ({_n(done['messages'], 'message')})"
        if isinstance(exc, KeyboardInterrupt):
            raise _Interrupted(f"interrupted; {so_far} already imported and kept") from None
        raise click.ClickException(f"{exc} (import stopped; {so_far} before it were kept)") from exc
    memory = app.memory(create=True)
    added = sum(_turns(memory, user) - turns for user, turns in before.items())
    summary = {**done, "turns_added": added}
    app.emit(summary, lambda: mapping_table(summary))


def register(group: click.Group) -> None:
    group.add_command(add_command)
    group.add_command(import_command)
