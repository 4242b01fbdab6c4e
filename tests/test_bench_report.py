"""Run directories: config, resumable per-question rows, summary files and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engram.bench.report import (
    append_rows,
    completed_ids,
    markdown_table,
    plot_recall_vs_k,
    prepare_run_dir,
    read_rows,
    write_summary,
)
from engram.errors import ConfigurationError, DataError

CONFIG = {"benchmark": "locomo", "systems": ["bm25"], "k_values": [1, 5], "limit": 3}


def test_config_is_written_and_rows_round_trip(tmp_path: Path) -> None:
    out = prepare_run_dir(tmp_path / "run", CONFIG)
    assert json.loads((out / "config.json").read_text(encoding="utf-8")) == CONFIG
    append_rows(out, [{"id": "a", "x": 1}, {"id": "b", "x": "é"}])
    append_rows(out, [])
    append_rows(out, [{"id": "c"}])
    assert [r["id"] for r in read_rows(out)] == ["a", "b", "c"]
    assert completed_ids(out) == {"a", "b", "c"}
    assert read_rows(tmp_path / "empty") == []


def test_a_torn_last_line_is_ignored_and_appending_continues(tmp_path: Path) -> None:
    out = prepare_run_dir(tmp_path, CONFIG)
    append_rows(out, [{"id": "a"}])
    with (out / "per_question.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"id": "b", "resul')  # killed mid-write
    assert completed_ids(out) == {"a"}
    append_rows(out, [{"id": "b"}])
    assert [r["id"] for r in read_rows(out)] == ["a", "b"]


def test_a_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "per_question.jsonl").write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(DataError):
        read_rows(tmp_path)


def test_resuming_needs_the_same_settings(tmp_path: Path) -> None:
    out = prepare_run_dir(tmp_path, CONFIG)
    append_rows(out, [{"id": "a"}])
    prepare_run_dir(tmp_path, {**CONFIG, "limit": 10, "workers": 4})  # free to change
    with pytest.raises(ConfigurationError, match="k_values"):
        prepare_run_dir(tmp_path, {**CONFIG, "k_values": [1, 10]})


def test_markdown_table() -> None:
    table = markdown_table(["system", "@1"], [["bm25", 0.5], ["a|b", 2]])
    assert table.splitlines() == [
        "| system | @1 |",
        "|---|---:|",
        "| bm25 | 0.500 |",
        "| a\\|b | 2 |",
    ]


def test_summary_files(tmp_path: Path) -> None:
    write_summary(tmp_path, {"x": 1.5}, "# hi\n")
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == {"x": 1.5}
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == "# hi\n"


def test_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    panels = {
        "engram:hybrid": {"overall": {1: 0.2, 5: 0.6, 10: 0.8}, "1": {1: 0.1, 5: 0.5, 10: 0.7}},
        "bm25": {"overall": {1: 0.1, 5: 0.4, 10: 0.6}},
    }
    path = tmp_path / "plot.png"
    assert plot_recall_vs_k(path, panels, title="t", ylabel="recall")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
