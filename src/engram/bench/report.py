"""A benchmark run directory: ``config.json``, ``per_question.jsonl``, ``summary.json``,
``summary.md`` and ``recall_vs_k*.png`` plots (when the optional matplotlib is installed).

Rows are appended one work unit at a time, so an interrupted run can be resumed: questions whose
ids are already in ``per_question.jsonl`` are skipped, provided the configuration that decides
the results is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engram.errors import ConfigurationError, DataError

__all__ = [
    "CONFIG_FILE",
    "ROWS_FILE",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "append_rows",
    "completed_ids",
    "markdown_table",
    "plot_recall_vs_k",
    "prepare_run_dir",
    "read_rows",
    "write_summary",
]

CONFIG_FILE = "config.json"
ROWS_FILE = "per_question.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
# Settings that may change between the runs that fill one directory.
_FREE_KEYS = frozenset({"limit", "workers", "started_at", "resumed"})


def prepare_run_dir(out_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Create ``out_dir`` and write ``config.json``.

    If the directory already holds results from a run whose configuration differs (other than
    in limit, workers, timestamps), raise :class:`ConfigurationError` instead of mixing them.
    """
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    config_file = path / CONFIG_FILE
    if config_file.exists() and (path / ROWS_FILE).exists():
        try:
            previous = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {config_file}: {exc}") from exc
        changed = sorted(
            key
            for key in set(previous) | set(config)
            if key not in _FREE_KEYS and previous.get(key) != config.get(key)
        )
        if changed:
            raise ConfigurationError(
                f"{path} holds results of a run with different settings ({', '.join(changed)}); "
                "use another output directory"
            )
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows written so far; a torn last line (an interrupted write) is ignored."""
    file = Path(out_dir) / ROWS_FILE
    if not file.exists():
        return []
    rows: list[dict[str, Any]] = []
    lines = file.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise DataError(f"{file}:{number}: not valid JSON: {exc}") from exc
    return rows


def completed_ids(out_dir: str | Path) -> set[str]:
    return {str(row["id"]) for row in read_rows(out_dir)}


def append_rows(out_dir: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    file = Path(out_dir) / ROWS_FILE
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if not text:
        return
    if file.exists():
        _drop_torn_tail(file)
    with file.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()


def _drop_torn_tail(file: Path) -> None:
    """Cut a last line that an interrupted write left without its newline."""
    with file.open("r+b") as handle:
        end = handle.seek(0, 2)
        position = end
        while position > 0:
            start = max(0, position - 65536)
            handle.seek(start)
            chunk = handle.read(position - start)
            if position == end and chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                return
            position = start
        handle.truncate(0)


def write_summary(out_dir: str | Path, summary: Mapping[str, Any], markdown: str) -> None:
    path = Path(out_dir)
    (path / SUMMARY_JSON).write_text(
        json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8"
    )
    (path / SUMMARY_MD).write_text(markdown, encoding="utf-8")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats with three decimals."""
    lines = [
        "| " + " | ".join(_cell(h) for h in headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines.extend("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def plot_recall_vs_k(
    path: str | Path,
    panels: Mapping[str, Mapping[str, Mapping[int, float]]],
    *,
    title: str,
    ylabel: str,
) -> bool:
    """One panel per system, one line per group (k on the x axis). ``False`` (and no file)
    when matplotlib is not installed: it is an optional extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    count = max(len(panels), 1)
    cols = min(3, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.6 * cols, 3.8 * rows), sharey=True, squeeze=False
    )
    flat = [ax for row in axes for ax in row]
    for ax, (system, groups) in zip(flat, panels.items(), strict=False):
        ks: list[int] = sorted({k for series in groups.values() for k in series})
        for group, series in groups.items():
            xs = sorted(series)
            ax.plot(xs, [series[k] for k in xs], marker="o", label=group,
                    linewidth=2.5 if group == "overall" else 1.2)  # fmt: skip
        ax.set_title(system)
        ax.set_xlabel("k")
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_ylim(0.0, 1.02)
        ax.grid(True, alpha=0.3)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel(ylabel)
    flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)
    return True
