"""The three ways benchmarks/serve_load.py reaches a memory: embedded (``Memory`` in this process,
each client a thread), REST (``engram serve`` in a child process, httpx) and MCP (``engram mcp
--http`` in a child process, the MCP SDK's own client, one session per client)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import httpx

_SERVING = re.compile(r"serving (http://\S+)")


class Session(Protocol):
    """One client's connection."""

    async def search(self, user: str, query: str) -> int: ...  # returns the number of hits

    async def add(self, user: str, session: str, messages: Sequence[dict[str, Any]]) -> int: ...

    async def close(self) -> None: ...


class Driver(Protocol):
    name: str

    async def session(self) -> Session: ...

    def stop(self) -> dict[str, Any]: ...


# -- embedded -----------------------------------------------------------------------------------


class _EmbeddedSession:
    def __init__(self, driver: EmbeddedDriver) -> None:
        self.driver = driver

    async def search(self, user: str, query: str) -> int:
        loop = asyncio.get_running_loop()
        mem = self.driver.memory
        hits = await loop.run_in_executor(
            self.driver.pool, lambda: mem.search(query, user_id=user, limit=10)
        )
        return len(hits)

    async def add(self, user: str, session: str, messages: Sequence[dict[str, Any]]) -> int:
        loop = asyncio.get_running_loop()
        mem = self.driver.memory
        done = await loop.run_in_executor(
            self.driver.pool, lambda: mem.add(list(messages), user_id=user, session_id=session)
        )
        return len(done)

    async def close(self) -> None:
        return None


class EmbeddedDriver:
    """``Memory`` in this process, opened as the server opens it (a BatchingEmbedder over the
    model); the clients' calls run on a pool of ``threads`` threads, as a server's run on its
    thread pool (more threads than cores only fight over the GIL)."""

    name = "embedded"

    def __init__(self, db: Path, threads: int, batch_max: int, spec: str) -> None:
        from engram import Memory
        from engram.config import make_embedder

        embedder: Any = make_embedder(spec)
        if batch_max > 1:
            from engram import BatchingEmbedder

            embedder = BatchingEmbedder(embedder, max_batch=batch_max)
        self.embedder = embedder
        self.memory = Memory.open(db, embedder=embedder)
        self.memory.embedder.embed_batch(["warm up"])
        self.pool = ThreadPoolExecutor(max_workers=max(threads, 1))

    async def session(self) -> Session:
        return _EmbeddedSession(self)

    def stop(self) -> dict[str, Any]:
        self.pool.shutdown(wait=True)
        stats = getattr(self.embedder, "stats", None)
        info = {"batching": _dataclass_dict(stats())} if callable(stats) else {}
        self.memory.close()
        return info


def _dataclass_dict(value: Any) -> dict[str, Any]:
    return {k: getattr(value, k) for k in getattr(value, "__dataclass_fields__", {})}


# -- server processes ---------------------------------------------------------------------------


class ServerChild:
    """An ``engram`` server command in a child process, until ``stop``."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engram.cli.main", *args], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        found = threading.Event()
        self.url = ""

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                match = _SERVING.search(line)
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        found.wait(300)
        if not self.url:
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        base = self.url.removesuffix("/mcp")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server never became ready:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _batching_line(lines: Sequence[str]) -> dict[str, Any]:
    for line in reversed(lines):
        if "model calls:" in line:
            return {"server_log": line.strip()}
    return {}


class _RestSession:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def search(self, user: str, query: str) -> int:
        r = await self.client.post("/v1/search", json={"user_id": user, "query": query})
        r.raise_for_status()
        return len(r.json()["hits"])

    async def add(self, user: str, session: str, messages: Sequence[dict[str, Any]]) -> int:
        body = {"user_id": user, "session_id": session, "messages": list(messages)}
        r = await self.client.post("/v1/messages", json=body)
        r.raise_for_status()
        return len(r.json()["records"])

    async def close(self) -> None:
        return None


class RestDriver:
    """``engram serve`` in a child process; ``workers`` server processes (mode ``rest-wN``)."""

    def __init__(self, db: Path, clients: int, env: dict[str, str], workers: int = 1) -> None:
        self.name = "rest" if workers == 1 else f"rest-w{workers}"
        args = ["--db", str(db), "serve", "--port", "0", "--workers", str(workers)]
        self.child = ServerChild(args, env)
        limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
        self.client = httpx.AsyncClient(base_url=self.child.url, timeout=120, limits=limits)

    async def session(self) -> Session:
        return _RestSession(self.client)

    def stop(self) -> dict[str, Any]:
        self.child.stop()
        return _batching_line(self.child.lines)

    async def aclose(self) -> None:
        await self.client.aclose()


class _McpSession:
    def __init__(self, client: Any, stack: Any) -> None:
        self.client = client
        self.stack = stack

    async def search(self, user: str, query: str) -> int:
        result = await self.client.call_tool("search_memory", {"query": query, "user_id": user})
        if result.is_error:
            raise RuntimeError(_text(result))
        content = result.structured_content or {}
        return len(content.get("results", content.get("hits", [])))

    async def add(self, user: str, session: str, messages: Sequence[dict[str, Any]]) -> int:
        stored = 0
        for message in messages:  # remember takes one message
            args = {"content": message["content"], "session_id": session, "user_id": user}
            result = await self.client.call_tool("remember", args)
            if result.is_error:
                raise RuntimeError(_text(result))
            stored += 1
        return stored

    async def close(self) -> None:
        await self.stack.aclose()


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)[:300]


class McpDriver:
    name = "mcp"

    def __init__(self, db: Path, env: dict[str, str]) -> None:
        args = ["--db", str(db), "mcp", "--http", "--port", "0", "--allow-any-user"]
        self.child = ServerChild(args, env)

    async def session(self) -> Session:
        from contextlib import AsyncExitStack

        from mcp import Client

        stack = AsyncExitStack()
        client = await stack.enter_async_context(Client(self.child.url))
        return _McpSession(client, stack)

    def stop(self) -> dict[str, Any]:
        self.child.stop()
        return _batching_line(self.child.lines)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)
