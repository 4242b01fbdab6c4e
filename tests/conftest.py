"""Shared fixtures: real SQLite stores (file and in-memory), the fast fake embedder, and the real
bundled embedder (loaded once per test session)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engram import HashEmbedder, Memory, SentenceTransformerEmbedder, SqliteStore, Store
from llama_server import LlamaServer, start_llama
from pg import SKIP_ENV, PgServer, start_server
from servers import engram_env

StoreFactory = Callable[[], Store]


def _sqlite_file(tmp_path: Path) -> StoreFactory:
    return lambda: SqliteStore(tmp_path / "engram.db")


def _sqlite_memory(tmp_path: Path) -> StoreFactory:
    return lambda: SqliteStore(":memory:")


STORE_FACTORIES = {"sqlite-file": _sqlite_file, "sqlite-memory": _sqlite_memory}
BACKENDS = [*sorted(STORE_FACTORIES), "postgres"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server with pgvector for the whole test session (tests/pg.py). It FAILS the
    tests that need it when it cannot start, unless ENGRAM_SKIP_POSTGRES=1 skips them."""
    if os.environ.get(SKIP_ENV, "").strip() == "1":
        pytest.skip(f"{SKIP_ENV}=1: the PostgreSQL tests are skipped")
    try:
        server = start_server()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh database of the test server, owned by the (non-superuser) app role."""
    url = pg_server.new_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(autouse=True)
def _no_engram_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's ENGRAM_* settings."""
    for name in (
        "ENGRAM_DB", "ENGRAM_EMBEDDER", "ENGRAM_OPENAI_BASE_URL", "ENGRAM_OPENAI_API_KEY",
        "ENGRAM_EMBED_CACHE", "ENGRAM_SERVER", "ENGRAM_API_KEY", "ENGRAM_LLM_BASE_URL",
        "ENGRAM_LLM_MODEL", "ENGRAM_LLM_API_KEY", "ENGRAM_CONFIG",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Every Store backend the contract suite runs against (each call of a factory opens
    another store on the same database)."""
    if request.param == "postgres":
        from engram.store.postgres import PostgresStore

        url = request.getfixturevalue("pg_url")
        return lambda: PostgresStore(url, pool_size=4)
    return STORE_FACTORIES[request.param](tmp_path)


@pytest.fixture
def store(store_factory: StoreFactory) -> Iterator[Store]:
    s = store_factory()
    yield s
    s.close()


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memory]:
    m = Memory(store=SqliteStore(tmp_path / "mem.db"), embedder=HashEmbedder())
    yield m
    m.close()


@pytest.fixture(scope="session")
def server_env() -> dict[str, str]:
    """The environment of every ``engram`` child process of the server tests (one place for
    it; the default settings, micro-batching on)."""
    return engram_env()


@pytest.fixture(scope="session")
def bundled_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One real llama.cpp server for the session (tests/llama_server.py)."""
    server = start_llama(tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()
