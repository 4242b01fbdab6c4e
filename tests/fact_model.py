"""A rule-based stand-in for an LLM in the fact pipeline's tests: it reads the JSON data of
Engram's extraction, conflict and answer prompts and answers as a careful model would, so the
tests exercise the real prompts, parsing, checks and writes. (The wire protocol against a real
model is tested in test_llm_llama.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from engram.llm import ChatMessage, ScriptedLLM

__all__ = ["RuleModel", "data_of"]

_LIVES = re.compile(r"\bI (?:live|moved|have moved|relocated) (?:in|to) ([A-Z][a-z]+)")
_LIKES = re.compile(r"\bI (?:love|like|enjoy) ([a-z ]+?)(?:[.!]|$)")
_WHEN = re.compile(r"\b(last \w+|yesterday|\d{4}-\d{2}-\d{2}|\d+ \w+ ago)\b")


def data_of(messages: Sequence[ChatMessage]) -> Any:
    """The JSON data block of the last user message of an Engram prompt."""
    content = messages[-1].content
    start = content.index(":\n") + 2
    end = content.find("\n\nQuestion")
    return json.loads(content[start : end if end >= 0 else None])


class RuleModel:
    """Answers extraction calls with "lives in" / "likes" facts of the user turns, conflict
    calls with SUPERSEDE for a new home and ADD otherwise, and answer calls with the newest
    fact, citing it. ``fail`` entries (exceptions) are raised first, one per call."""

    def __init__(self, fail: Sequence[Exception] = ()) -> None:
        self.fail = list(fail)
        self.prompts: list[tuple[str, Sequence[ChatMessage]]] = []

    def __call__(self, messages: Sequence[ChatMessage], schema: type[BaseModel]) -> Any:
        self.prompts.append((schema.__name__, messages))
        if self.fail:
            return self.fail.pop(0)  # an exception returned is raised, and counted as failed
        handler: Callable[[Any], Any] = {
            "Extraction": self._extract,
            "Decisions": self._decide,
            "AnswerOut": self._answer,
        }[schema.__name__]
        return handler(data_of(messages))

    def _extract(self, turns: list[dict[str, str]]) -> dict[str, Any]:
        facts = []
        for turn in turns:
            if turn["speaker"] in ("assistant",):
                continue
            when = _WHEN.search(turn["text"])
            for city in _LIVES.findall(turn["text"]):
                facts.append(self._fact(f"{turn['speaker']} lives in {city}", turn, when))
            for thing in _LIKES.findall(turn["text"]):
                facts.append(self._fact(f"{turn['speaker']} likes {thing.strip()}", turn, when))
        return {"facts": facts}

    @staticmethod
    def _fact(statement: str, turn: dict[str, str], when: re.Match[str] | None) -> dict[str, Any]:
        return {
            "subject": turn["speaker"],
            "statement": statement,
            "when": when[0] if when else None,
            "sources": [turn["id"]],
            "confidence": 0.9,
        }

    def _decide(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        decisions = []
        for item in items:
            home = [k for k in item["known"] if " lives in " in k["text"]]
            if " lives in " in item["new"] and home:
                decisions.append({"fact": item["fact"], "action": "SUPERSEDE",
                                  "target": home[0]["id"], "reason": "moved"})  # fmt: skip
            else:
                decisions.append({"fact": item["fact"], "action": "ADD", "reason": "new"})
        return {"decisions": decisions}

    def _answer(self, entries: list[dict[str, str]]) -> dict[str, Any]:
        facts = [e for e in entries if "fact" in e]
        if not facts:
            return {"answer": "I do not know.", "citations": []}
        return {"answer": facts[-1]["fact"], "citations": [facts[-1]["id"], "m999"]}


def rule_llm(model: RuleModel | None = None, calls: int = 200) -> tuple[ScriptedLLM, RuleModel]:
    """A ScriptedLLM answering ``calls`` requests with ``model``."""
    model = model or RuleModel()
    return ScriptedLLM([model] * calls), model
