"""``engram serve`` (the REST server) and ``engram keys`` (its API keys). Both need the server
extra; they import it when they run, so the rest of the command line works without it."""

from __future__ import annotations

from typing import Any

import click

from engram.cli.app import App, common_options, pass_app
from engram.cli.output import iso, table

__all__ = ["register"]


def _server_settings(app: App, command: str, config: str | None, **flags: Any) -> Any:
    """The server's settings (the global options of the command line among them); a server
    and its key file are local: --server and --api-key are refused."""
    from engram.server import ServerSettings

    app.local_only(command)
    return ServerSettings.load(config, **app.explicit, **flags)


config_option = click.option(
    "--config", metavar="PATH", help="A TOML settings file (env ENGRAM_CONFIG); docs/server.md."
)


@click.command("serve")
@click.option("--host", metavar="HOST", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8765; 0: any free).")
@click.option("--keys", metavar="PATH", help="The API key file (default: the database + .keys).")
@click.option(
    "--workers", type=click.IntRange(1, 256), metavar="N",
    help="Server processes on the port (default 1); one per core for the most searches/s.",
)  # fmt: skip
@config_option
@common_options
@pass_app
def serve_command(
    app: App, host: str | None, port: int | None, keys: str | None, workers: int | None,
    config: str | None,
) -> None:  # fmt: skip
    """Serve the memory over HTTP (REST, OpenAPI at /docs) until interrupted.

    Without an API key the server listens on loopback only. Create keys with 'engram keys
    create'. A TERM or INT signal finishes the requests in flight, then stops."""
    from engram.server import serve

    settings = _server_settings(app, "serve", config, host=host, port=port, keys=keys,
                                workers=workers)  # fmt: skip
    serve(settings)


@click.group("keys")
def keys_group() -> None:
    """Manage the REST server's API keys (stored hashed, next to the database)."""


def _key_store(app: App, keys: str | None, config: str | None) -> Any:
    from engram import ConfigurationError
    from engram.server import KeyStore

    settings = _server_settings(app, "keys", config, keys=keys)
    if settings.keys_path is None:
        raise ConfigurationError("an in-memory database has no key file: pass --keys PATH")
    return KeyStore(settings.keys_path)


keys_option = click.option("--keys", metavar="PATH", help="The key file (default: --db + .keys).")


def _key_json(key: Any) -> dict[str, Any]:
    return {
        "id": key.id, "tenant": key.tenant, "users": key.users, "read_only": key.read_only,
        "note": key.note, "created_at": iso(key.created_at), "revoked_at": iso(key.revoked_at),
    }  # fmt: skip


def _keys_table(keys: list[Any]) -> str:
    rows = [
        (k.id, k.tenant, k.users, "read-only" if k.read_only else "read-write",
         "revoked" if k.revoked_at else "active", iso(k.created_at), k.note or "")
        for k in keys
    ]  # fmt: skip
    headers = ("id", "tenant", "users", "access", "state", "created", "note")
    return table(headers, rows, empty="(no keys)")


@keys_group.command("create")
@click.option("--tenant", required=True, metavar="TENANT", help="Lower-case letters, digits, -, _.")
@click.option(
    "--users", default="*", show_default=True, metavar="PATTERN",
    help="Which of the tenant's user ids the key may act for (shell pattern: alice, team-*).",
)  # fmt: skip
@click.option("--read-only", is_flag=True, help="Only searches and reads.")
@click.option("--note", metavar="TEXT", help="What the key is for.")
@keys_option
@config_option
@common_options
@pass_app
def create_command(
    app: App, tenant: str, users: str, read_only: bool, note: str | None,
    keys: str | None, config: str | None,
) -> None:  # fmt: skip
    """Create an API key; it is printed once and never stored in the clear."""
    secret, key = _key_store(app, keys, config).create(
        tenant, users=users, read_only=read_only, note=note
    )
    doc = {"key": secret, **_key_json(key)}
    app.emit(doc, lambda: f"{secret}\n(key {key.id} for tenant {key.tenant}; shown only now)")


@keys_group.command("list")
@click.option("--tenant", metavar="TENANT", help="Only this tenant's keys.")
@keys_option
@config_option
@common_options
@pass_app
def list_command(app: App, tenant: str | None, keys: str | None, config: str | None) -> None:
    """List the API keys (ids, tenants, access; never the keys themselves)."""
    found = _key_store(app, keys, config).list(tenant)
    app.emit([_key_json(k) for k in found], lambda: _keys_table(found))


@keys_group.command("revoke")
@click.argument("key_id", metavar="ID")
@keys_option
@config_option
@common_options
@pass_app
def revoke_command(app: App, key_id: str, keys: str | None, config: str | None) -> None:
    """Revoke an API key at once (running servers see it on their next request)."""
    key = _key_store(app, keys, config).revoke(key_id)
    app.emit(_key_json(key), lambda: f"revoked {key.id} (tenant {key.tenant})")


def register(group: click.Group) -> None:
    group.add_command(serve_command)
    group.add_command(keys_group)
