"""``engram bench locomo`` and ``engram bench longmemeval``: retrieval benchmarks, thin wrappers
over :func:`engram.bench.run_locomo` and :func:`engram.bench.run_longmemeval`.

Each run writes a run directory (``--out``: ``config.json``, ``per_question.jsonl``,
``summary.json``, ``summary.md``, plots) and prints the summary: the ``summary.json`` document,
or with ``--pretty`` the ``summary.md`` tables. A run resumes from the rows already in ``--out``.
The runner is imported inside the commands, so that ``engram --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from engram import PRESETS
from engram.cli.app import App, common_options, pass_app
from engram.cli.bench_qa import qa_options, run_qa_command

__all__ = ["LEVELS", "MODES", "bench_group", "register", "select_level"]

F = TypeVar("F", bound=Callable[..., Any])
LEVELS = ("session", "turn")  # LongMemEval's two levels of retrieval
MODES = ("named", "plain")  # LoCoMo's input modes (engram.bench.systems.MODES, not imported here)


class _Interrupted(click.ClickException):
    exit_code = 130


def _k_values(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """``--k 1,5,10`` -> ``[1, 5, 10]``."""
    if value is None:
        return None
    try:
        ks = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        ks = []
    if not ks or any(k < 1 for k in ks):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of positive integers")
    return sorted(set(ks))


def _run_options(default_k: str) -> Callable[[F], F]:
    """The options both benchmarks share (``default_k`` only for the help text)."""
    options = [
        click.option(
            "--data", metavar="PATH", required=True,
            help="The benchmark's JSON file, in its official format.",
        ),
        click.option(
            "--out", metavar="DIR", required=True, type=click.Path(file_okay=False),
            help="The run directory; a run resumes from the results already in it.",
        ),
        click.option(
            "--preset", "presets", metavar="NAME", multiple=True, type=click.Choice(list(PRESETS)),
            help="An Engram search preset to run (repeatable; default: all of "
            f"{', '.join(PRESETS)}).",
        ),
        click.option(
            "--limit", type=click.IntRange(min=1), metavar="N",
            help="Only the first N scorable questions, in file order.",
        ),
        click.option(
            "--workers", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
            help="Worker processes, each with its own embedder.",
        ),
        click.option(
            "--k", "k_values", metavar="K,K,...", callback=_k_values,
            help=f"The cut-offs k of the metrics@k (default {default_k}).",
        ),
        click.option(
            "--no-baselines", is_flag=True,
            help="Run only Engram, not the BM25 and dense baselines.",
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]  # fmt: skip
    options.append(common_options)

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def select_level(summary: dict[str, Any], level: str | None) -> dict[str, Any]:
    """The summary with only ``level``'s results (``None``: unchanged)."""
    if level is None:
        return summary
    results = {
        system: {name: value for name, value in per_level.items() if name == level}
        for system, per_level in summary["results"].items()
    }
    return {**summary, "levels": [level], "results": results}


def _run(
    app: App, benchmark: str, data: str, out: str, *, presets: Sequence[str], limit: int | None,
    workers: int, k_values: Sequence[int] | None, no_baselines: bool, quiet: bool,
    level: str | None = None, extra: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    from engram.bench import run_locomo, run_longmemeval
    from engram.bench.summary import render_markdown
    from engram.config import make_embedder

    app.local_only(f"bench {benchmark}")  # it builds its own in-process memories
    run = run_locomo if benchmark == "locomo" else run_longmemeval
    options: dict[str, Any] = {
        "preset": list(dict.fromkeys(presets)) or list(PRESETS),
        "embedder": make_embedder(app.settings.embedder, app.settings),
        "limit": limit,
        "workers": workers,
        "progress": not quiet and sys.stderr.isatty(),
    }
    options.update(extra or {})
    if k_values is not None:
        options["k_values"] = k_values
    if no_baselines:
        options["baselines"] = ()
    try:
        summary = run(data, out, **options)
    except KeyboardInterrupt:
        raise _Interrupted(
            f"interrupted; the questions finished so far are kept in {out}: run the same "
            "command again to resume"
        ) from None
    shown = select_level(summary, level)
    app.emit(shown, lambda: render_markdown(shown).rstrip("\n"))


@click.group("bench")
def bench_group() -> None:
    """Run retrieval benchmarks (LoCoMo, LongMemEval) on Engram and baselines.

    Each run writes config.json, per_question.jsonl, summary.json and summary.md to --out,
    and prints the summary (--pretty: the summary.md tables).
    """


@bench_group.command("locomo")
@click.option(
    "--mode", "modes", multiple=True, type=click.Choice(MODES),
    help="An input mode (repeatable; default: both): named (speaker in the name field, question "
    "dates) or plain (role only, the speaker inside the text, no question date).",
)  # fmt: skip
@_run_options("1,5,10,20")
@qa_options
@pass_app
def locomo_command(
    app: App, modes: tuple[str, ...], data: str, out: str, presets: tuple[str, ...],
    limit: int | None, workers: int, k_values: list[int] | None, no_baselines: bool, quiet: bool,
    qa: bool, reader: str | None, reader_model: str | None, judge: str | None,
    judge_model: str | None, extract_facts: bool, budget: int,
) -> None:  # fmt: skip
    """Evidence recall@k on a LoCoMo file (data/locomo10.json of snap-research/LoCoMo).

    One in-memory store per conversation; each question with evidence (category 5,
    adversarial, excluded) is searched once and the ranked dia_ids are scored, for every
    --preset (in both input modes, named and plain) and the BM25 and dense baselines.
    Re-running with the same settings resumes. With --qa: answers judged with LoCoMo's J prompt
    instead (docs/llm.md).
    """
    if _qa(app, "locomo", data, out, limit, click.get_current_context().params):
        return
    _run(
        app, "locomo", data, out, presets=presets, limit=limit, workers=workers,
        k_values=k_values, no_baselines=no_baselines, quiet=quiet,
        extra={"modes": list(dict.fromkeys(modes)) or list(MODES)},
    )  # fmt: skip


@bench_group.command("longmemeval")
@click.option(
    "--granularity", type=click.Choice(LEVELS), default=None,
    help="Print only the session-level or only the turn-level results (default: both; the "
    "files in --out always hold both).",
)  # fmt: skip
@click.option(
    "--pool", is_flag=True,
    help="One memory for the whole file: every session of every question's haystack, and each "
    "question searched against all of them (default: one memory per question).",
)  # fmt: skip
@_run_options("1,3,5,10,30,50")
@qa_options
@pass_app
def longmemeval_command(
    app: App, granularity: str | None, pool: bool, data: str, out: str, presets: tuple[str, ...],
    limit: int | None, workers: int, k_values: list[int] | None, no_baselines: bool, quiet: bool,
    qa: bool, reader: str | None, reader_model: str | None, judge: str | None,
    judge_model: str | None, extract_facts: bool, budget: int,
) -> None:  # fmt: skip
    """LongMemEval's recall_any, recall_all and ndcg_any @k at session and turn level.

    One in-memory store per question (abstention questions excluded); the turn ranking comes
    from search, the session ranking from search_sessions. Re-running with the same settings
    resumes. With --pool: one memory for all the file's sessions, every question searched
    against all of them. With --qa: answers judged with LongMemEval's per-type prompts instead.
    """
    if _qa(app, "longmemeval", data, out, limit, click.get_current_context().params):
        return
    _run(
        app, "longmemeval", data, out, presets=presets, limit=limit, workers=workers,
        k_values=k_values, no_baselines=no_baselines, quiet=quiet, level=granularity,
        extra={"pool": pool},
    )  # fmt: skip


_QA_PARAMS = ("qa", "reader", "reader_model", "judge", "judge_model", "extract_facts", "budget")


def _qa(
    app: App, benchmark: str, data: str, out: str, limit: int | None, params: dict[str, Any]
) -> bool:
    """Run the --qa mode if asked (True); its options without --qa are an error. ``params``:
    the command's parameters, of which the --qa options are read."""
    qa = {name: params[name] for name in _QA_PARAMS}
    if not qa.pop("qa"):
        given = [name for name, value in qa.items() if value not in (None, False, 3000)]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} goes with --qa")
        return False
    qa["extract"] = qa.pop("extract_facts")
    run_qa_command(app, benchmark, data, out, limit=limit, **qa)
    return True


def register(group: click.Group) -> None:
    """Add the ``bench`` group (``locomo``, ``longmemeval``) to the ``engram`` group."""
    group.add_command(bench_group)
