"""OpenAICompatibleLLM against the real llama.cpp server (llama-cpp-python's, with SmolLM2-135M):
the wire protocol, grammar-enforced schemas, the json_schema -> json_object fallback, usage
counts and the error paths. Provisioned by scripts/provision-llama.sh; fails (does not skip)
when that has not run, unless ENGRAM_SKIP_LLAMA=1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from engram.errors import LLMUnavailableError
from engram.llm import ChatMessage, OpenAICompatibleLLM, UsageMeter
from llama_server import LlamaServer, start_llama

pytestmark = pytest.mark.llama

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
