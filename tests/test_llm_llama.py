"""OpenAICompatibleLLM against the real llama.cpp server (llama-cpp-python's, with SmolLM2-135M):
the wire protocol, grammar-enforced schemas, the json_schema -> json_object fallback, usage
counts and the error paths. Provisioned by scripts/provision-llama.sh; fails (does not skip)
when that has not run, unless ENGRAM_SKIP_LLAMA=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field

from engram.errors import LLMUnavailableError
from engram.llm import ChatMessage, OpenAICompatibleLLM, UsageMeter

pytestmark = pytest.mark.llama

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = ROOT / ".venv-llama" / "bin" / "python"
DEFAULT_GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
KEY = "sk-llama-test-7f3a"
READY_S = 90.0
ASK = [
    ChatMessage("system", "Extract facts about the user. Answer with JSON only."),
    ChatMessage("user", "I moved to Lyon in 2021 and adopted a cat named Tom in 2023."),
]


class Fact(BaseModel):
    subject: str = Field(max_length=40)
    kind: Literal["place", "job", "pet", "other"]
    year: int


class Facts(BaseModel):
    facts: list[Fact] = Field(min_length=1, max_length=3)


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


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = start_llama(tmp_path_factory.mktemp("llama"))
    yield server
    server.stop()


def test_auto_falls_back_to_json_object_and_validates(llama: LlamaServer) -> None:
    meter = UsageMeter()
    with llama.llm() as llm:
        assert llm.response_format == "json_schema"
        facts = llm.complete_json(ASK, Facts, meter=meter)
        assert llm.response_format == "json_object"  # llama-cpp-python answers json_schema 500
    assert isinstance(facts, Facts)
    assert 1 <= len(facts.facts) <= 3
    usage = meter.total
    assert usage.failed == 1  # the refused json_schema request
    assert usage.calls >= 1
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0


def test_explicit_json_object(llama: LlamaServer) -> None:
    meter = UsageMeter()
    with llama.llm(response_format="json_object") as llm:
        facts = llm.complete_json(ASK, Facts, meter=meter, max_tokens=200)
    assert all(f.kind in ("place", "job", "pet", "other") for f in facts.facts)
    assert meter.total.failed == 0
    assert meter.total.calls >= 1
    assert meter.total.total_tokens > meter.total.prompt_tokens > 0


def test_wrong_key_fails_at_once(llama: LlamaServer) -> None:
    meter = UsageMeter()
    llm = OpenAICompatibleLLM(llama.base_url, "smollm2", api_key="sk-wrong-key-9", timeout=30)
    with llm, pytest.raises(LLMUnavailableError, match="HTTP 401") as caught:
        llm.complete_json(ASK, Facts, meter=meter)
    assert "not retried" in str(caught.value)
    assert "sk-wrong-key-9" not in str(caught.value)
    assert (meter.total.calls, meter.total.failed) == (0, 1)


def test_too_short_timeout_is_unavailable(llama: LlamaServer) -> None:
    meter = UsageMeter()
    with llama.llm(response_format="json_object", timeout=0.02, max_attempts=2) as llm:
        start = time.monotonic()
        with pytest.raises(LLMUnavailableError, match="timeout"):
            llm.complete_json(ASK, Facts, meter=meter, max_tokens=24)
        assert time.monotonic() - start < 5.0
    assert meter.total.failed == 2


def test_killed_server_is_unavailable(tmp_path: Path) -> None:
    server = start_llama(tmp_path)
    try:
        with server.llm(response_format="json_object", max_attempts=2, backoff=0.05) as llm:
            llm.complete_json(ASK, Facts, max_tokens=200)
            server.proc.kill()
            server.proc.wait(timeout=30)
            meter = UsageMeter()
            start = time.monotonic()
            with pytest.raises(LLMUnavailableError, match="cannot reach"):
                llm.complete_json(ASK, Facts, meter=meter)
            assert time.monotonic() - start < 5.0
        assert (meter.total.calls, meter.total.failed) == (0, 2)
    finally:
        server.stop()
