"""The REST API end to end: real ``engram serve`` processes (tests/servers.py), real HTTP.

Writes are seen by the next read, and after a restart; adds are idempotent; list pages neither
skip nor repeat records while others are added and deleted; history records every change; every
failure has the one error body and its documented status (src/engram/server/errors.py)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import ServerProcess, rest_server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """One server for the tests of this module that share its state (each uses its own users)."""
    with rest_server(tmp_path_factory.mktemp("api") / "engram.db", env=server_env) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_kept_alive_connections_answer_at_once(http: httpx.Client) -> None:
    """A response is sent as soon as it is ready (TCP_NODELAY): without it every response on a
    kept-alive connection waited for the client's delayed ACK, 40 ms each on Linux."""
    http.get("/healthz")
    times = []
    for _ in range(21):
        start = time.perf_counter()
        assert http.get("/healthz").status_code == 200
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.025, times
