"""``engram search``: the turns (or sessions) most relevant to a query."""

from __future__ import annotations

from datetime import datetime

import click

from engram import PRESETS
from engram.cli.app import (
    App,
    agent_option,
    common_options,
    iso_date,
    pass_app,
    session_option,
    user_option,
)
from engram.cli.output import hit_json, hits_table, session_json, sessions_table

__all__ = ["register"]


@click.command("search")
@click.argument("query")
@user_option()
@click.option(
    "--limit", type=click.IntRange(min=1), default=10, show_default=True,
    help="How many hits (or sessions); at most 1000.",
)  # fmt: skip
@session_option("Search only this session.")
@agent_option("Search only this agent's conversations.")
@click.option(
    "--date",
    metavar="ISO_DATE",
    callback=iso_date,
    help="When the question is asked (default: now); anchors recency.",
)
@click.option(
    "--preset", type=click.Choice(sorted(PRESETS)), default="hybrid", show_default=True,
    help="lexical (BM25), semantic (embeddings) or hybrid (both, fused with RRF).",
)  # fmt: skip
@click.option(
    "--sessions", "by_session", is_flag=True, help="Rank sessions by their best turns instead."
)
@click.option("--facts", is_flag=True, help="Search the facts the LLM extracted instead.")
@click.option(
    "--as-of", "as_of", metavar="ISO_DATE", callback=iso_date,
    help="Search memory as it was then: turns said by then, facts true then.",
)  # fmt: skip
@common_options
@pass_app
def search_command(
    app: App,
    query: str,
    user_id: str,
    limit: int,
    session_id: str | None,
    agent_id: str | None,
    date: datetime | None,
    preset: str,
    by_session: bool,
    facts: bool,
    as_of: datetime | None,
) -> None:
    """Search a user's memory for QUERY; best first.

    Each hit shows its record id, the caller's message_id, session, role, name, text,
    timestamp, final score, and found_by: each retriever's rank and raw score for it.
    """
    if by_session and session_id is not None:
        raise click.UsageError("--sessions ranks sessions; it cannot be limited to --session")
    if by_session and (facts or as_of is not None):
        raise click.UsageError("--sessions cannot be combined with --facts or --as-of")
    memory = app.memory()
    if by_session:
        sessions = memory.search_sessions(
            query, user_id=user_id, limit=limit, agent_id=agent_id, question_date=date,
            config=preset,
        )  # fmt: skip
        app.emit([session_json(s) for s in sessions], lambda: sessions_table(sessions))
        return
    search = memory.search_facts if facts else memory.search
    hits = search(
        query, user_id=user_id, limit=limit, session_id=session_id, agent_id=agent_id,
        question_date=date, config=preset, as_of=as_of,
    )  # fmt: skip
    app.emit([hit_json(h) for h in hits], lambda: hits_table(hits))


def register(group: click.Group) -> None:
    group.add_command(search_command)
