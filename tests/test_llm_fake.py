"""ScriptedLLM and the parse-validate-correct loop it shares with the real client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Literal

import pytest
from pydantic import BaseModel

from engram.errors import LLMError, LLMOutputError, LLMUnavailableError
from engram.llm import LLM, ChatMessage, ScriptedLLM, ScriptExhaustedError, UsageMeter
from engram.llm._retry import Reply, complete_validated, strip_fences

ASK = [ChatMessage("user", "Who lives where?")]


class Person(BaseModel):
    name: str
    city: str
    confidence: Literal["low", "high"]


ALICE = Person(name="Alice", city="Paris", confidence="high")


def test_it_is_an_llm() -> None:
    llm: LLM = ScriptedLLM()
    assert llm.name == "scripted"


@pytest.mark.parametrize(
    "entry",
    [
        ALICE,
        {"name": "Alice", "city": "Paris", "confidence": "high"},
        '{"name": "Alice", "city": "Paris", "confidence": "high"}',
        '```json\n{"name": "Alice", "city": "Paris", "confidence": "high"}\n```',
        'Here you go:\n```\n{"name": "Alice", "city": "Paris", "confidence": "high"}\n```',
        lambda messages, schema: schema(name="Alice", city="Paris", confidence="high"),
    ],
    ids=["model", "dict", "json", "fenced", "prose-and-fence", "callable"],
)
def test_valid_entries(entry: object) -> None:
    llm = ScriptedLLM([entry])  # type: ignore[list-item]
    meter = UsageMeter()
    assert llm.complete_json(ASK, Person, meter=meter) == ALICE
    (call,) = llm.calls
    assert call.messages == tuple(ASK)
    assert call.schema == "Person"
    assert meter.total.calls == 1
    assert meter.total.prompt_tokens == (len("Who lives where?") + 3) // 4
    assert meter.total.completion_tokens > 0
    assert llm.remaining == 0


def test_invalid_json_then_valid_retries_with_a_correction() -> None:
    llm = ScriptedLLM(["{name: Alice", ALICE])
    meter = UsageMeter()
    assert llm.complete_json(ASK, Person, meter=meter) == ALICE
    first, second = llm.calls
    assert first.messages == tuple(ASK)
    assert second.messages[:1] == tuple(ASK)
    assert second.messages[1] == ChatMessage("assistant", "{name: Alice")
    assert second.messages[2].role == "user"
    assert "not valid JSON" in second.messages[2].content
    assert (meter.total.calls, meter.total.failed) == (2, 0)


def test_schema_violation_until_spent_is_an_output_error() -> None:
    bad = {"name": "Alice", "city": "Paris", "confidence": "total"}
    llm = ScriptedLLM([bad] * 5, max_retries=2)
    meter = UsageMeter()
    with pytest.raises(LLMOutputError) as caught:
        llm.complete_json(ASK, Person, meter=meter)
    message = str(caught.value)
    assert "confidence" in message
    assert "Person" in message
    assert "3 answer(s)" in message
    assert len(llm.calls) == 3
    assert llm.remaining == 2
    assert meter.total.calls == 3
    assert "confidence" in llm.calls[-1].messages[-1].content


def test_no_retries() -> None:
    llm = ScriptedLLM(["[]", ALICE], max_retries=0)
    with pytest.raises(LLMOutputError, match="1 answer"):
        llm.complete_json(ASK, Person)


def test_long_problems_are_truncated() -> None:
    class Many(BaseModel):
        values: list[int]

    llm = ScriptedLLM([json.dumps({"values": ["x"] * 500})], max_retries=0)
    with pytest.raises(LLMOutputError) as caught:
        llm.complete_json(ASK, Many)
    assert len(str(caught.value)) < 800
    assert str(caught.value).endswith("...")


def test_empty_answer_is_invalid() -> None:
    llm = ScriptedLLM(["", "   ", ALICE])
    assert llm.complete_json(ASK, Person) == ALICE
    assert "empty" in llm.calls[1].messages[-1].content


def test_exception_entries_are_raised_and_counted() -> None:
    llm = ScriptedLLM([LLMUnavailableError("down"), ALICE])
    meter = UsageMeter()
    with pytest.raises(LLMUnavailableError, match="down"):
        llm.complete_json(ASK, Person, meter=meter)
    assert llm.complete_json(ASK, Person, meter=meter) == ALICE
    assert (meter.total.calls, meter.total.failed) == (1, 1)


def test_callable_sees_the_conversation() -> None:
    seen: list[tuple[int, str]] = []

    def answer(messages: Sequence[ChatMessage], schema: type[BaseModel]) -> str:
        seen.append((len(messages), schema.__name__))
        return "nope" if len(messages) == 1 else ALICE.model_dump_json()

    llm = ScriptedLLM([answer, answer])
    assert llm.complete_json(ASK, Person) == ALICE
    assert seen == [(1, "Person"), (3, "Person")]


def test_exhaustion_is_a_clear_error_and_not_an_llm_error() -> None:
    llm = ScriptedLLM([ALICE])
    llm.complete_json(ASK, Person)
    with pytest.raises(ScriptExhaustedError, match="no script entry left for request 2") as caught:
        llm.complete_json(ASK, Person)
    assert not isinstance(caught.value, LLMError)
    llm.extend([ALICE])
    assert llm.complete_json(ASK, Person, max_tokens=5) == ALICE
    assert llm.calls[-1].max_tokens == 5


def test_unsupported_entry() -> None:
    llm = ScriptedLLM([42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="unsupported"):
        llm.complete_json(ASK, Person)


def test_the_loop_directly() -> None:
    answers = iter([Reply("{}", 3, 1), Reply(ALICE.model_dump_json(), 5, 2)])
    meter = UsageMeter()
    person = complete_validated(
        lambda conversation: next(answers), ASK, Person, max_retries=1, meter=meter, model="m"
    )
    assert person == ALICE
    assert meter.total.as_dict() == {
        "calls": 2, "failed": 0, "prompt_tokens": 8, "completion_tokens": 3
    }  # fmt: skip
    with pytest.raises(ValueError, match="at least one message"):
        complete_validated(lambda c: Reply("{}"), [], Person, max_retries=0, meter=None, model="m")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('  \n```json\n{"a": 1}\n```  ', '{"a": 1}'),
        ('```JSON {"a": 1}```', '{"a": 1}'),
        ("no json here", "no json here"),
        ('[1, "```"]', '[1, "```"]'),
    ],
)
def test_strip_fences(text: str, expected: str) -> None:
    assert strip_fences(text) == expected


def test_base_imports_stay_light() -> None:
    code = (
        "import sys, engram; assert 'pydantic' not in sys.modules, 'engram imports pydantic'\n"
        "import engram.llm; assert 'httpx' not in sys.modules, 'engram.llm imports httpx'\n"
        "assert 'pydantic_settings' not in sys.modules\n"
        "engram.llm.OpenAICompatibleLLM; assert 'httpx' in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
