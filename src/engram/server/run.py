"""``engram serve``: build the memory a server uses and run the REST app under uvicorn."""

from __future__ import annotations

import logging
import math
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from engram import ConfigurationError, Memory
from engram.config import make_embedder
from engram.embed import Embedder
from engram.server.app import create_app, warm_up
from engram.server.keys import KeyStore
from engram.server.settings import ServerSettings, is_loopback
from engram.store import open_store
from engram.store.postgres import display_db

__all__ = [
    "Listener",
    "bind",
    "check_exposure",
    "close_memory",
    "listen",
    "open_memory",
    "report_batching",
    "run_uvicorn",
    "serve",
]

log = logging.getLogger("engram.server")


def open_memory(settings: ServerSettings) -> Memory:
    """The server's memory: the configured store and embedder, the embedder wrapped in a
    :class:`~engram.BatchingEmbedder` so that concurrent requests share model calls, and the
    LLM of ``ENGRAM_LLM_*`` / the config file's ``[llm]`` table (none without a base URL)."""
    from engram.llm.settings import LLMSettings, make_llm

    llm = make_llm(LLMSettings.load(config=settings.config_path))
    embedder: Embedder = make_embedder(settings.embedder, settings.core())
    if settings.batch_max > 1:
        from engram.embed import BatchingEmbedder

        embedder = BatchingEmbedder(
            embedder, max_batch=settings.batch_max, max_wait=settings.batch_wait_ms / 1000
        )
    store = open_store(settings.db)
    try:
        return Memory(store=store, embedder=embedder, llm=llm, extract=settings.extract_default)
    except BaseException:
        store.close()
        raise


def close_memory(memory: Memory) -> None:
    """Close the store, then the LLM's connections."""
    memory.close()
    close = getattr(memory.llm, "close", None)
    if callable(close):
        close()


def check_exposure(host: str, keys: KeyStore | None) -> None:
    """Refuse to listen beyond loopback unless an active API key exists (with every key revoked
    the server stays keyed, but nobody could use it there)."""
    if is_loopback(host):
        return
    if keys is None or not keys.any_active():
        raise ConfigurationError(
            f"refusing to listen on {host}: no API key is configured, and without one the "
            "server only listens on loopback (127.0.0.1, ::1). Create a key with "
            "'engram keys create --tenant NAME', or serve on 127.0.0.1 behind a proxy"
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # each response on a kept-alive connection waits for the client's delayed ACK (40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _graceful_exit(sig: int, frame: object) -> None:
    raise SystemExit(0)


def run_uvicorn(app: Any, sock: socket.socket, settings: ServerSettings, memory: Memory) -> None:
    """Run ``app`` on ``sock`` until SIGINT or SIGTERM; requests in flight are finished (up to
    ``shutdown_timeout`` seconds), then the memory is closed and the process exits with 0.

    uvicorn ends a signalled shutdown by raising the signal again under the handlers it found;
    ours turns that into SystemExit, so the store is closed (its log checkpointed) before exit,
    where the default handler would kill the process first."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
        lifespan="on", access_log=False, timeout_keep_alive=math.ceil(settings.keep_alive),
    )  # fmt: skip
    previous = {sig: signal.signal(sig, _graceful_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        report_batching(memory)
        close_memory(memory)
        sock.close()


def report_batching(memory: Memory) -> None:
    """One line on stderr: how many model calls the micro-batching saved."""
    stats = getattr(memory.embedder, "stats", None)
    if callable(stats):
        s = stats()
        print(
            f"engram: model calls: {s.calls} requests ({s.texts} texts) in {s.batches} batches, "
            f"the largest {s.largest} texts", file=sys.stderr, flush=True,
        )  # fmt: skip


@dataclass(frozen=True)
class Listener:
    """A server about to run: its key file, its bound socket and its (warmed-up) memory."""

    keys: KeyStore | None
    sock: socket.socket
    memory: Memory

    def url(self, path: str = "") -> str:
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}{path}"

    @property
    def mode(self) -> str:
        return key_mode(self.keys)


def key_mode(keys: KeyStore | None) -> str:
    """How the server admits requests, for its "serving" line."""
    keyed = keys is not None and keys.any_created()
    return "API keys required" if keyed else "no API key"


def listen(settings: ServerSettings, port: int) -> Listener:
    """Check the exposure, bind ``settings.host:port`` and open the memory with its model loaded,
    so that the server answers at its usual speed from its first request."""
    keys = KeyStore(settings.keys_path) if settings.keys_path else None
    check_exposure(settings.host, keys)
    sock = bind(settings.host, port)
    try:
        memory = open_memory(settings)
    except BaseException:
        sock.close()
        raise
    warm_up(memory)
    return Listener(keys, sock, memory)


def serve(settings: ServerSettings) -> None:
    """Run the REST server until SIGINT or SIGTERM (see :func:`run_uvicorn`); with ``workers``
    above 1, that many server processes on one socket (:mod:`engram.server.workers`)."""
    if settings.workers > 1:
        return _serve_workers(settings)
    server = listen(settings, settings.port)
    app = create_app(server.memory, settings, keys=server.keys)
    print(f"engram: serving {server.url()} ({_describe(settings, server.keys, server.memory)})",
          file=sys.stderr, flush=True)  # fmt: skip
    run_uvicorn(app, server.sock, settings, server.memory)


def _describe(settings: ServerSettings, keys: KeyStore | None, memory: Memory) -> str:
    llm = "no LLM" if memory.llm is None else f"LLM {memory.llm.name}"
    return f"{display_db(settings.db)}; {key_mode(keys)}; {llm}"


def _serve_workers(settings: ServerSettings) -> None:
    """Check the exposure, bind, open the store once here (a bad path or setting is one clear
    error, and migrations run before any worker starts), then supervise the workers."""
    from engram.server.workers import supervise

    keys = KeyStore(settings.keys_path) if settings.keys_path else None
    check_exposure(settings.host, keys)
    sock = bind(settings.host, settings.port)
    try:
        memory = open_memory(settings)  # the model is not loaded: the workers load their own
        describe = _describe(settings, keys, memory)
        close_memory(memory)
        supervise(settings, sock, describe)
    finally:
        sock.close()
