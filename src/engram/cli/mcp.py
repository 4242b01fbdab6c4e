"""``engram mcp``: the memory as an MCP server for Claude Desktop, Claude Code, Cursor and other
MCP hosts (docs/mcp.md). Needs the server extra, imported when the command runs."""

from __future__ import annotations

import click

from engram.cli.app import App, common_options, pass_app

__all__ = ["register"]


@click.command("mcp")
@click.option("--user", "mcp_user", metavar="USER", help="Whose memory (default 'default').")
@click.option(
    "--allow-any-user", is_flag=True, default=None,
    help="Let a tool call name another user (a user_id argument).",
)  # fmt: skip
@click.option(
    "--allow-forget", is_flag=True, default=None,
    help="Offer forget_all_memories (delete everything of the user).",
)  # fmt: skip
@click.option(
    "--http/--stdio", "http", default=None,
    help="Serve streamable HTTP at /mcp instead of stdio (default: stdio).",
)  # fmt: skip
@click.option("--host", metavar="HOST", help="With --http: the address (default 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="With --http: the port (default 8766; 0: any)."
)
@click.option(
    "--config", metavar="PATH", help="A TOML settings file (env ENGRAM_CONFIG); docs/mcp.md."
)
@common_options
@pass_app
def mcp_command(
    app: App, mcp_user: str | None, allow_any_user: bool | None, allow_forget: bool | None,
    http: bool | None, host: str | None, port: int | None, config: str | None,
) -> None:  # fmt: skip
    """Serve the memory over MCP (stdio by default) until the client disconnects.

    Every tool acts for one user, --user (env ENGRAM_MCP_USER; default 'default'). Without
    --db, ENGRAM_DB or a config file's db, the database is $XDG_DATA_HOME/engram/engram.db
    (else ~/.local/share/engram/engram.db), whatever the working directory."""
    from engram.server.mcp import load_mcp_settings, run_mcp

    app.local_only("mcp")
    transport = None if http is None else ("http" if http else "stdio")
    settings = load_mcp_settings(
        config, **app.explicit, mcp_user=mcp_user, mcp_allow_any_user=allow_any_user,
        mcp_allow_forget=allow_forget, mcp_transport=transport, host=host, mcp_port=port,
    )  # fmt: skip
    run_mcp(settings)


def register(group: click.Group) -> None:
    group.add_command(mcp_command)
