"""From per-question rows to a run's summary: aggregated metrics, markdown tables, plots.

A row's ``results[system]["metrics"]`` maps a level (``"turn"``, and for LongMemEval also
``"session"``) to ``{metric: value}``, or to ``None`` when the question has no evidence at that
level (it is then left out of that level's means). Metric names are ``<family>@<k>``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engram.bench.metrics import aggregate
from engram.bench.report import markdown_table, plot_recall_vs_k

__all__ = ["render_markdown", "summarise", "write_plots"]

PRIMARY = {"locomo": "recall", "longmemeval": "recall_all"}
GROUP_LABEL = {"locomo": "category", "longmemeval": "question type"}


def summarise(
    benchmark: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    systems: Sequence[str],
    k_values: Sequence[int],
    levels: Sequence[str],
    data: Mapping[str, Any],
    config: Mapping[str, Any],
    group_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    latency: dict[str, dict[str, float]] = {}
    for system in systems:
        per_level: dict[str, Any] = {}
        for level in levels:
            scored = [
                (str(row["group"]), row["results"][system]["metrics"][level])
                for row in rows
                if row["results"][system]["metrics"].get(level) is not None
            ]
            per_level[level] = aggregate(scored)
        results[system] = per_level
        times = [float(row["results"][system]["ms"]) for row in rows]
        latency[system] = _latency(times)
    return {
        "benchmark": benchmark,
        "questions_scored": len(rows),
        "systems": list(systems),
        "k_values": list(k_values),
        "levels": list(levels),
        "primary_metric": PRIMARY[benchmark],
        "group_names": dict(group_names or {}),
        "results": results,
        "query_latency_ms": latency,
        "data": dict(data),
        "config": dict(config),
    }


def _latency(times: Sequence[float]) -> dict[str, float]:
    if not times:
        return {}
    ordered = sorted(times)
    return {
        "mean": statistics.fmean(ordered),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def _families(groups: Mapping[str, Mapping[str, float]]) -> list[str]:
    names = {m.split("@")[0] for g in groups.values() for m in g if "@" in m}
    return sorted(names)


def _overall_table(summary: Mapping[str, Any], level: str) -> str:
    ks = summary["k_values"]
    rows: list[list[object]] = []
    for system in summary["systems"]:
        groups = summary["results"][system][level]
        overall = groups.get("overall", {})
        for family in _families(groups):
            values = [overall.get(f"{family}@{k}", "") for k in ks]
            rows.append([system, family, int(overall.get("n", 0)), *values])
    return markdown_table(["system", "metric", "n", *[f"@{k}" for k in ks]], rows)


def _group_table(summary: Mapping[str, Any], level: str, system: str) -> str:
    ks = summary["k_values"]
    family = summary["primary_metric"]
    names = summary["group_names"]
    rows: list[list[object]] = []
    for group, metrics in summary["results"][system][level].items():
        label = f"{group} ({names[group]})" if group in names else group
        rows.append([label, int(metrics["n"]), *[metrics.get(f"{family}@{k}", "") for k in ks]])
    header = GROUP_LABEL[summary["benchmark"]]
    return markdown_table([header, "n", *[f"{family}@{k}" for k in ks]], rows)


def _ratio_table(summary: Mapping[str, Any], level: str) -> str | None:
    systems: list[str] = summary["systems"]
    ours = [s for s in systems if s.startswith("engram:")]
    baselines = [s for s in systems if not s.startswith("engram:")]
    if not ours or not baselines:
        return None
    family = summary["primary_metric"]
    rows: list[list[object]] = []
    for system in ours:
        mine = summary["results"][system][level].get("overall", {})
        for base in baselines:
            theirs = summary["results"][base][level].get("overall", {})
            cells: list[object] = []
            for k in summary["k_values"]:
                a, b = mine.get(f"{family}@{k}"), theirs.get(f"{family}@{k}")
                cells.append(f"{a / b:.2f}x" if a is not None and b else "")
            rows.append([f"{system} / {base}", *cells])
    return markdown_table(["ratio", *[f"{family}@{k}" for k in summary["k_values"]]], rows)


def render_markdown(summary: Mapping[str, Any]) -> str:
    config = summary["config"]
    parts = [
        f"# {summary['benchmark']} retrieval: {summary['questions_scored']} questions\n",
        f"Data: `{config.get('data')}`; embedder: `{config.get('embedder')}`; "
        f"Engram {config.get('engram_version')}.\n",
        f"Data file: `{json.dumps(summary['data'], sort_keys=True)}`\n",
    ]
    for level in summary["levels"]:
        parts.append(f"## {level.capitalize()}-level retrieval, all questions\n")
        parts.append(_overall_table(summary, level))
        ratios = _ratio_table(summary, level)
        if ratios:
            parts.append(f"\nRatios of {summary['primary_metric']} (same run, same questions):\n")
            parts.append(ratios)
        for system in summary["systems"]:
            parts.append(f"\n### {system}, {level}-level, by {GROUP_LABEL[summary['benchmark']]}\n")
            parts.append(_group_table(summary, level, system))
        parts.append("")
    latency = summary["query_latency_ms"]
    rows = [[s, *(latency[s].get(m, "") for m in ("mean", "p50", "p95"))] for s in latency]
    machine = summary.get("machine", {})
    parts.append("## Query latency (ms per question: embedding the question and searching)\n")
    parts.append(
        f"{config.get('workers')} worker(s) on {machine.get('cpus', '?')} CPUs; a run with "
        "more workers than cores inflates every latency.\n"
    )
    parts.append(markdown_table(["system", "mean", "p50", "p95"], rows))
    for note in summary.get("notes", []):
        parts.append(f"\n_{note}_\n")
    return "\n".join(parts)


def write_plots(out_dir: str | Path, summary: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``recall_vs_k_<level>.png`` per level; returns (files written, notes)."""
    family = summary["primary_metric"]
    files: list[str] = []
    for level in summary["levels"]:
        panels = {
            system: {
                group: {k: metrics[f"{family}@{k}"] for k in summary["k_values"]}
                for group, metrics in summary["results"][system][level].items()
            }
            for system in summary["systems"]
        }
        name = f"recall_vs_k_{level}.png"
        title = f"{summary['benchmark']}: {level}-level {family}@k"
        if not plot_recall_vs_k(Path(out_dir) / name, panels, title=title, ylabel=family):
            return files, ["plots skipped: matplotlib is not installed (pip install matplotlib)"]
        files.append(name)
    return files, []
