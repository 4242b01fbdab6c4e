"""The ``--qa`` mode of ``engram bench locomo|longmemeval``: answers from memory by a reader
LLM, judged by a judge LLM with the benchmark's official prompt (:mod:`engram.bench.qa`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from engram.cli.app import App

__all__ = ["qa_options", "run_qa_command"]

F = TypeVar("F", bound=Callable[..., Any])


def qa_options(func: F) -> F:
    options = [
        click.option("--qa", is_flag=True, help="Answer the questions with --reader and judge "
                     "them with --judge (official judge prompts) instead of retrieval metrics."),
        click.option("--reader", metavar="URL", help="The reader's OpenAI-compatible base URL "
                     "(default: --llm / ENGRAM_LLM_BASE_URL)."),
        click.option("--reader-model", metavar="MODEL", help="The reader's model "
                     "(default: --llm-model / ENGRAM_LLM_MODEL)."),
        click.option("--judge", metavar="URL", help="The judge's base URL (default: the reader)."),
        click.option("--judge-model", metavar="MODEL", help="The judge's model "
                     "(default: the reader's)."),
        click.option("--extract-facts", is_flag=True, help="With --qa: the reader also "
                     "extracts facts while the memories are built (extract='sync')."),
        click.option("--budget", type=click.IntRange(100, 200_000), default=3000,
                     show_default=True, help="With --qa: tokens of memory shown to the reader."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _llm(url: str | None, model: str | None, what: str) -> Any:
    from engram.llm.settings import LLMSettings, make_llm

    if url is None:
        raise click.UsageError(
            f"--qa needs a {what}: --{what} URL (or --llm / ENGRAM_LLM_BASE_URL)"
        )
    return make_llm(LLMSettings.load(base_url=url, model=model))


def run_qa_command(
    app: App, benchmark: str, data: str, out: str, *, limit: int | None, reader: str | None,
    reader_model: str | None, judge: str | None, judge_model: str | None, extract: bool,
    budget: int,
) -> None:  # fmt: skip
    from engram.bench.qa import run_qa
    from engram.config import make_embedder

    app.local_only(f"bench {benchmark} --qa")
    url = reader or app.settings.llm_base_url
    model = reader_model or app.settings.llm_model
    reading = _llm(url, model, "reader")
    judging = _llm(judge or url, judge_model or model, "judge")
    summary = run_qa(
        benchmark, data, out, embedder=make_embedder(app.settings.embedder, app.settings),
        reader=reading, judge=judging, limit=limit, extract=extract, budget=budget,
    )  # fmt: skip

    def pretty() -> str:
        lines = [f"{benchmark} QA: {summary['questions']} questions, accuracy "
                 f"{summary['accuracy']}, {summary['errors']} errors"]  # fmt: skip
        for group, value in summary["by_group"].items():
            lines.append(f"  {group}: {value['accuracy']:.3f} ({value['n']})")
        return "\n".join(lines)

    app.emit(summary, pretty)
