"""A real llama.cpp server (llama-cpp-python's, provisioned by scripts/provision-llama.sh) for
the tests that need a real LLM: started on a free loopback port, with a bounded wait."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from engram.llm import OpenAICompatibleLLM

__all__ = ["KEY", "LlamaServer", "start_llama"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = ROOT / ".venv-llama" / "bin" / "python"
DEFAULT_GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
KEY = "sk-llama-test-7f3a"
READY_S = 90.0


@dataclass
class LlamaServer:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    log: IO[bytes]

    def llm(self, **options: Any) -> OpenAICompatibleLLM:
        settings: dict[str, Any] = {"api_key": KEY, "timeout": 30.0, "max_tokens": 160}
        return OpenAICompatibleLLM(self.base_url, "smollm2", **{**settings, **options})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


def _provisioned() -> tuple[Path, Path]:
    if os.environ.get("ENGRAM_SKIP_LLAMA") == "1":
        pytest.skip("ENGRAM_SKIP_LLAMA=1: the llama.cpp server tier is opted out")
    python = Path(os.environ.get("ENGRAM_TEST_LLAMA_PYTHON") or DEFAULT_PYTHON)
    gguf = Path(os.environ.get("ENGRAM_TEST_GGUF") or DEFAULT_GGUF)
    missing = [str(p) for p in (python, gguf) if not p.is_file()]
    if missing:
        pytest.fail(
            f"the llama.cpp test tier is not provisioned ({', '.join(missing)} missing): run "
            "scripts/provision-llama.sh, or set ENGRAM_SKIP_LLAMA=1 to opt out",
            pytrace=False,
        )
    return python, gguf


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_llama(log_dir: Path) -> LlamaServer:
    """A llama.cpp server on a free loopback port, ready to answer (bounded wait)."""
    python, gguf = _provisioned()
    port = _free_port()
    args = [
        str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--n_threads_batch", "2",
        "--api_key", KEY, "--verbose", "False",
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"}
    log_path = log_dir / f"llama-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = LlamaServer(proc, f"http://127.0.0.1:{port}/v1", log_path, log)
    deadline = time.monotonic() + READY_S
    headers = {"Authorization": f"Bearer {KEY}"}
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            answer = httpx.get(f"{server.base_url}/models", headers=headers, timeout=2)
            if answer.status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"the llama.cpp server did not get ready: {log_path.read_text()[-2000:]}")
