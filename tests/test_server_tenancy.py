"""Tenants over HTTP, against real ``engram serve`` processes with keys made by ``engram keys``:
no request with one tenant's key ever sees or changes another tenant's data, even for the same
user ids; keys limited to some users or to reads are held to it; a revoked key stops at once;
and forgetting a user leaves no row of it in any table of the file."""

from __future__ import annotations

import json
from pathlib import Path

from servers import run_engram


def keys_cli(env: dict[str, str], path: Path, *args: str) -> object:
    """``engram keys ARGS --keys PATH``: its JSON output (the command must succeed)."""
    done = run_engram("keys", *args, "--keys", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return json.loads(done.stdout)


def test_keys_create_list_revoke(tmp_path: Path, server_env: dict[str, str]) -> None:
    path = tmp_path / "api.keys"
    made = keys_cli(server_env, path, "create", "--tenant", "acme", "--users", "team-*")
    assert isinstance(made, dict)
    assert made["key"].startswith(f"egk_{made['id']}_")
    assert (made["tenant"], made["users"], made["read_only"]) == ("acme", "team-*", False)
    listed = keys_cli(server_env, path, "list")
    assert listed == [{k: v for k, v in made.items() if k != "key"}]
    revoked = keys_cli(server_env, path, "revoke", made["id"])
    assert isinstance(revoked, dict) and revoked["revoked_at"] is not None
    assert made["key"] not in path.read_bytes().decode("latin-1")  # only its hash is stored
