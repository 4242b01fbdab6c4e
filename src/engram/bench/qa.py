"""Question answering from memory, judged: ``engram bench locomo|longmemeval --qa``.

For each conversation (LoCoMo) or question (LongMemEval) a fresh memory is built; optionally
the reader LLM extracts facts while it is built (``extract``). Each question is answered by
:meth:`engram.Memory.answer` with the reader, and the answer judged by the judge LLM with the
benchmark's official prompt: LongMemEval's per-type prompts (Wu et al., 2024,
``src/evaluation/evaluate_qa.py``) and LoCoMo's J (the LLM-as-a-judge prompt of the Mem0
paper's evaluation, ``evaluation/metrics/llm_judge.py``; category 5 excluded, as there). The
prompts are the originals; the judge answers through Engram's schema-constrained call
(``{"label": ...}``) instead of free text. Tokens and latency are recorded per question.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from engram.bench import locomo, longmemeval
from engram.bench.corpus import Question, WorkUnit, clean_sessions
from engram.embed.base import Embedder
from engram.errors import LLMError
from engram.llm.base import LLM, ChatMessage, UsageMeter
from engram.memory import Memory
from engram.store.sqlite import SqliteStore

__all__ = ["judge_prompt", "run_qa"]

USER_ID = "bench"

_LME_CORE = (
    "I will give you a question, a correct answer, and a response from a model. Please answer "
    "yes if the response contains the correct answer. Otherwise, answer no. If the response is "
    "equivalent to the correct answer or contains all the intermediate steps to get the correct "
    "answer, you should also answer yes. If the response only contains a subset of the "
    "information required by the answer, answer no. "
)
_LME_TAIL = (
    "\n\nQuestion: {}\n\nCorrect Answer: {}\n\nModel Response: {}\n\n"
    "Is the model response correct? Answer yes or no only."
)
LONGMEMEVAL_PROMPTS = {
    "default": _LME_CORE + _LME_TAIL,
    "temporal-reasoning": _LME_CORE
    + "In addition, do not penalize off-by-one errors for the number of days. If the question "
    "asks for the number of days/weeks/months, etc., and the model makes off-by-one errors "
    "(e.g., predicting 19 days when the answer is 18), the model's response is still correct. "
    + _LME_TAIL,
    "knowledge-update": "I will give you a question, a correct answer, and a response from a "
    "model. Please answer yes if the response contains the correct answer. Otherwise, answer "
    "no. If the response contains some previous information along with an updated answer, the "
    "response should be considered as correct as long as the updated answer is the required "
    "answer." + _LME_TAIL,
    "single-session-preference": "I will give you a question, a rubric for desired "
    "personalized response, and a response from a model. Please answer yes if the response "
    "satisfies the desired response. Otherwise, answer no. The model does not need to reflect "
    "all the points in the rubric. The response is correct as long as it recalls and utilizes "
    "the user's personal information correctly.\n\nQuestion: {}\n\nRubric: {}\n\n"
    "Model Response: {}\n\nIs the model response correct? Answer yes or no only.",
}

LOCOMO_PROMPT = """
Your task is to label an answer to a question as \u2019CORRECT\u2019 or \u2019WRONG\u2019. You will be given the following data:
    (1) a question (posed by one user to another user), 
    (2) a \u2019gold\u2019 (ground truth) answer, 
    (3) a generated answer
which you will score as CORRECT/WRONG.

The point of the question is to ask about something one user should know about the other user based on their prior conversations.
The gold answer will usually be a concise and short answer that includes the referenced topic, for example:
Question: Do you remember what I got the last time I went to Hawaii?
Gold answer: A shell necklace
The generated answer might be much longer, but you should be generous with your grading - as long as it touches on the same topic as the gold answer, it should be counted as CORRECT. 

For time related questions, the gold answer will be a specific date, month, year, etc. The generated answer might be much longer or use relative time references (like "last Tuesday" or "next month"), but you should be generous with your grading - as long as it refers to the same date or time period as the gold answer, it should be counted as CORRECT. Even if the format differs (e.g., "May 7th" vs "7 May"), consider it CORRECT if it's the same date.

Now it's time for the real question:
Question: {question}
Gold answer: {gold_answer}
Generated answer: {generated_answer}

First, provide a short (one sentence) explanation of your reasoning, then finish with CORRECT or WRONG. 
Do NOT include both CORRECT and WRONG in your response, or it will break the evaluation script.

Just return the label CORRECT or WRONG in a json format with the key as "label".
"""  # noqa: E501, W291  (the original text, trailing spaces included)


class YesNo(BaseModel):
    label: Literal["yes", "no"]


class CorrectWrong(BaseModel):
    label: Literal["CORRECT", "WRONG"]


def judge_prompt(
    benchmark: str, question: Question, hypothesis: str
) -> tuple[list[ChatMessage], type[YesNo] | type[CorrectWrong]]:
    """The official judge prompt for a question and an answer, and the label schema."""
    gold = str(question.meta.get("answer", ""))
    if benchmark == "locomo":
        text = LOCOMO_PROMPT.format(
            question=question.text, gold_answer=gold, generated_answer=hypothesis
        )
        return [ChatMessage("user", text)], CorrectWrong
    template = LONGMEMEVAL_PROMPTS.get(question.group, LONGMEMEVAL_PROMPTS["default"])
    return [ChatMessage("user", template.format(question.text, gold, hypothesis))], YesNo


def _build(unit: WorkUnit, embedder: Embedder, reader: LLM, extract: bool, path: Path) -> Memory:
    mem = Memory(store=SqliteStore(path), embedder=embedder, llm=reader,
                 extract="sync" if extract else "off")  # fmt: skip
    for session in clean_sessions(unit.sessions):
        messages: list[dict[str, Any]] = []
        for turn in session.turns:
            message: dict[str, Any] = {"role": turn.role, "content": turn.text, "id": turn.id}
            if turn.name:
                message["name"] = turn.name
            messages.append(message)
        if messages:
            mem.add(messages, user_id=USER_ID, session_id=session.id, session_date=session.date)
    return mem


def _ask(
    mem: Memory, judge: LLM, benchmark: str, question: Question, budget: int
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": question.id, "group": question.group, "question": question.text,
        "answer": question.meta.get("answer"),
    }  # fmt: skip
    start = time.perf_counter()
    try:
        result = mem.answer(question.text, user_id=USER_ID, question_date=question.date,
                            budget=budget)  # fmt: skip
    except LLMError as exc:
        row.update(hypothesis=None, correct=False, error=f"reader: {exc}")
        return row
    row["answer_ms"] = round(1000 * (time.perf_counter() - start), 1)
    row.update(hypothesis=result.text, citations=[r.id for r in result.citations],
               context=len(result.context), reader=result.usage.as_dict())  # fmt: skip
    meter = UsageMeter()
    messages, schema = judge_prompt(benchmark, question, result.text)
    start = time.perf_counter()
    try:
        label = judge.complete_json(messages, schema, meter=meter).label
    except LLMError as exc:
        row.update(correct=False, error=f"judge: {exc}", judge=meter.total.as_dict())
        return row
    row.update(correct=label in ("yes", "CORRECT"), label=label, judge=meter.total.as_dict(),
               judge_ms=round(1000 * (time.perf_counter() - start), 1))  # fmt: skip
    return row


def _units(benchmark: str, data: str | Path) -> list[WorkUnit]:
    if benchmark == "locomo":
        return locomo.to_work_units(locomo.load_locomo(data).samples)
    return longmemeval.to_work_units(longmemeval.load_longmemeval(data).items)


def _summary(rows: Sequence[dict[str, Any]], extraction: dict[str, int]) -> dict[str, Any]:
    groups: dict[str, list[bool]] = {}
    for row in rows:
        groups.setdefault(str(row["group"]), []).append(bool(row["correct"]))

    def median(key: str, field: str | None = None) -> float | None:
        values = [r[key][field] if field else r[key] for r in rows if key in r]
        return statistics.median(values) if values else None

    return {
        "questions": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / len(rows) if rows else None,
        "by_group": {
            g: {"n": len(v), "accuracy": sum(v) / len(v)} for g, v in sorted(groups.items())
        },
        "errors": sum(1 for r in rows if r.get("error")),
        "median_answer_ms": median("answer_ms"),
        "median_judge_ms": median("judge_ms"),
        "median_reader_prompt_tokens": median("reader", "prompt_tokens"),
        "median_reader_completion_tokens": median("reader", "completion_tokens"),
        "extraction": extraction,
    }


def run_qa(
    benchmark: str, data: str | Path, out_dir: str | Path, *, embedder: Embedder, reader: LLM,
    judge: LLM, limit: int | None = None, extract: bool = False, budget: int = 3000,
) -> dict[str, Any]:  # fmt: skip
    """Answer and judge the first ``limit`` questions; write ``config.json``,
    ``rows.jsonl`` (one row per question) and ``summary.json`` to ``out_dir``; return the
    summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"benchmark": benchmark, "data": str(Path(data).resolve()), "reader": reader.name,
              "judge": judge.name, "embedder": embedder.name, "limit": limit,
              "extract": extract, "budget": budget,
              "started_at": datetime.now(UTC).isoformat()}  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    rows: list[dict[str, Any]] = []
    extraction: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, open(out / "rows.jsonl", "w") as sink:
        for n, unit in enumerate(_units(benchmark, data)):
            wanted = unit.questions[: None if limit is None else max(0, limit - len(rows))]
            if not wanted:
                break
            mem = _build(unit, embedder, reader, extract, Path(tmp) / f"{n}.db")
            try:
                for question in wanted:
                    rows.append(_ask(mem, judge, benchmark, question, budget))
                    sink.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
                for key, value in mem.stats().llm.get("extract", {}).items():
                    extraction[key] = extraction.get(key, 0) + value
            finally:
                mem.close()
    summary = {"config": config, **_summary(rows, extraction)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
