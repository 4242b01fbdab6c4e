"""The commands of the LLM layer: ``engram answer`` (a question answered from memory, with the
records it cites) and ``engram worker`` (deferred fact extraction)."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from types import FrameType
from typing import Any

import click

from engram import Answer, ProcessReport
from engram.cli.app import App, common_options, iso_date, pass_app, user_option
from engram.cli.output import mapping_table, record_json, records_table

__all__ = ["register"]


def answer_json(result: Answer) -> dict[str, Any]:
    return {
        "answer": result.text,
        "citations": [record_json(r) for r in result.citations],
        "context": len(result.context),
        "usage": result.usage.as_dict(),
    }


def report_json(report: ProcessReport) -> dict[str, Any]:
    return {
        "jobs": len(report.jobs),
        "done": report.done,
        "failed": report.failed,
        "actions": {
            verb: report.count(verb)
            for verb in ("ADD", "MERGE", "NOOP", "UPDATE", "SUPERSEDE")
            if report.count(verb)
        },
        "errors": [j.error for j in report.jobs if j.error],
        "usage": report.usage.as_dict(),
    }


@click.command("answer")
@click.argument("question")
@user_option()
@click.option(
    "--date", metavar="ISO_DATE", callback=iso_date,
    help="When the question is asked: facts true then are used (default: now).",
)  # fmt: skip
@click.option(
    "--budget", type=click.IntRange(100, 200_000), default=3000, show_default=True,
    help="Tokens of memory to show the model (estimated).",
)  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@common_options
@pass_app
def answer_command(
    app: App, question: str, user_id: str, date: datetime | None, budget: int, limit: int
) -> None:
    """Answer QUESTION from a user's memory with the LLM (--llm), citing the records used."""
    result = app.memory().answer(
        question, user_id=user_id, question_date=date, budget=budget, limit=limit
    )

    def pretty() -> str:
        return result.text + "\n\n" + records_table(result.citations)

    app.emit(answer_json(result), pretty)


class _Stop:
    """Set by SIGTERM / SIGINT: the worker finishes the job it is on, then exits."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


@click.command("worker")
@user_option(required=False)
@click.option("--once", is_flag=True, help="Process what is queued now, then exit.")
@click.option(
    "--interval", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
    help="Seconds to wait when the queue is empty.",
)  # fmt: skip
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=10, show_default=True,
    help="Jobs per round (each is committed on its own).",
)  # fmt: skip
@common_options
@pass_app
def worker_command(app: App, user_id: str | None, once: bool, interval: float, limit: int) -> None:
    """Extract facts for the turns added with --extract background, until stopped (SIGTERM or
    Ctrl-C end it between jobs; a job is one transaction, so nothing is left half done).
    Prints one JSON document per round that did something. With --server, the server's
    queue (for the key's tenant)."""
    memory = app.memory()
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    totals = {"jobs": 0, "done": 0, "failed": 0}
    try:
        while not stop.event.is_set():
            report = memory.process_pending(limit=limit, user_id=user_id)
            for key in totals:
                totals[key] += report_json(report)[key]
            if report.jobs:
                doc = report_json(report)
                app.emit(doc, lambda: mapping_table(doc))  # noqa: B023 (used at once)
            if once and len(report.jobs) < limit:
                break
            if not report.jobs:
                stop.event.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if once:
        click.echo(f"worker: {totals['done']} jobs done, {totals['failed']} failed", err=True)


def register(group: click.Group) -> None:
    group.add_command(answer_command)
    group.add_command(worker_command)
