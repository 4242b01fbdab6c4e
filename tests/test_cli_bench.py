"""``engram bench locomo`` and ``engram bench longmemeval``, run in-process through ``main(argv)``
on small synthetic files (a LoCoMo fixture written here, the synthetic LongMemEval generator) with
the hashing fake embedder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import engram.bench.runner
from cli_result import Result
from engram.bench import LOCOMO_K, LONGMEMEVAL_K, make_synthetic_longmemeval
from engram.cli.main import cli, main

RUN_FILES = {"config.json", "per_question.jsonl", "summary.json", "summary.md"}
FACTS = [
    ("I adopted a cat called Miso last week.", "What is the name of Ann's cat?"),
    ("My sister Clara moved to Lisbon in spring.", "Where did Ann's sister Clara move?"),
    ("I run the harbor marathon every October.", "Which marathon does Ann run?"),
]
FILLER = ["How was your weekend?", "Pretty quiet, I read a book.", "Work has been busy lately.",
          "Did you watch the game?", "I tried a new coffee place."]  # fmt: skip


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """``run("locomo", ...)`` runs ``engram bench locomo ... --embedder hash``."""

    def invoke(*args: str) -> Result:
        code = main(["bench", *args, "--embedder", "hash"])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


def locomo_file(path: Path) -> Path:
    """Two conversations in the official LoCoMo format: 3 scorable questions each, plus one
    adversarial (category 5) question that is not run."""
    samples: list[dict[str, Any]] = []
    for c in range(2):
        conv: dict[str, Any] = {"speaker_a": "Ann", "speaker_b": "Bo"}
        qa: list[dict[str, Any]] = []
        for s, (fact, question) in enumerate(FACTS, start=1):
            turns = [
                {"speaker": "Ann" if i % 2 == 0 else "Bo", "dia_id": f"D{s}:{i + 1}", "text": t}
                for i, t in enumerate(FILLER[s - 1 : s + 2])
            ]
            turns.append({"speaker": "Ann", "dia_id": f"D{s}:{len(turns) + 1}", "text": fact})
            conv[f"session_{s}"] = turns
            conv[f"session_{s}_date_time"] = f"10:0{s} am on {s} May, 2023"
            qa.append({"question": question, "answer": "x", "evidence": [turns[-1]["dia_id"]],
                       "category": s})  # fmt: skip
        qa.append({"question": "Bo's dog?", "adversarial_answer": "Rex", "evidence": ["D1:1"],
                   "category": 5})  # fmt: skip
        samples.append({"sample_id": f"conv-{c}", "conversation": conv, "qa": qa})
    path.write_text(json.dumps(samples), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("engram: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_locomo(run: Any, tmp_path: Path) -> None:
    data, out = locomo_file(tmp_path / "locomo.json"), tmp_path / "run"
    result = run("locomo", "--data", str(data), "--out", str(out), "--preset", "lexical",
                 "--preset", "hybrid", "--k", "1,5")  # fmt: skip
    assert result.code == 0, result.err
    assert result.err == ""  # no progress bar: stderr is not a terminal
    assert {p.name for p in out.iterdir()} >= RUN_FILES
    printed = result.json
    assert printed == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert printed["benchmark"] == "locomo"
    assert printed["systems"] == [
        "engram:lexical", "engram:lexical/plain", "engram:hybrid", "engram:hybrid/plain", "bm25",
        "dense",
    ]  # fmt: skip
    assert printed["k_values"] == [1, 5]
    assert printed["questions_scored"] == 6
    lexical = printed["results"]["engram:lexical"]["turn"]["overall"]
    assert lexical["n"] == 6 and lexical["recall@5"] == 1.0
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["embedder"] == "hash-256" and config["data"] == str(data.resolve())
    rows = read_lines(out / "per_question.jsonl")
    assert [r["id"] for r in rows] == [f"conv-{c}#{q}" for c in range(2) for q in range(3)]
    assert "| engram:hybrid | recall | 6 |" in (out / "summary.md").read_text(encoding="utf-8")


def test_locomo_defaults_and_options(run: Any, tmp_path: Path) -> None:
    data = locomo_file(tmp_path / "locomo.json")
    result = run("locomo", "--data", str(data), "--out", str(tmp_path / "a"), "--limit", "2")
    assert result.code == 0, result.err
    printed = result.json
    assert printed["systems"] == [
        "engram:lexical", "engram:lexical/plain", "engram:semantic", "engram:semantic/plain",
        "engram:hybrid", "engram:hybrid/plain", "bm25", "dense",
    ]  # fmt: skip
    assert printed["k_values"] == list(LOCOMO_K)
    assert printed["questions_scored"] == 2
    result = run("locomo", "--data", str(data), "--out", str(tmp_path / "b"), "--no-baselines",
                 "--preset", "semantic", "--workers", "2", "-q", "--mode", "named")  # fmt: skip
    assert result.code == 0, result.err
    assert result.json["systems"] == ["engram:semantic"]
    assert result.json["questions_scored"] == 6


def test_locomo_plain_mode_alone(run: Any, tmp_path: Path) -> None:
    data, out = locomo_file(tmp_path / "locomo.json"), tmp_path / "run"
    result = run("locomo", "--data", str(data), "--out", str(out), "--preset", "lexical",
                 "--no-baselines", "--mode", "plain")  # fmt: skip
    assert result.code == 0, result.err
    assert result.json["systems"] == ["engram:lexical/plain"]
    assert result.json["results"]["engram:lexical/plain"]["turn"]["overall"]["n"] == 6
    assert "| engram:lexical/plain | recall | 6 |" in (out / "summary.md").read_text("utf-8")
    bad = run("locomo", "--data", str(data), "--out", str(out), "--mode", "loud")
    assert_one_line_error(bad, 2, "--mode")


def test_locomo_pretty_prints_summary_md(run: Any, tmp_path: Path) -> None:
    data, out = locomo_file(tmp_path / "locomo.json"), tmp_path / "run"
    result = run("locomo", "--data", str(data), "--out", str(out), "--preset", "lexical",
                 "--no-baselines", "--pretty")  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.startswith("# locomo retrieval: 6 questions")
    assert result.out == (out / "summary.md").read_text(encoding="utf-8").rstrip("\n") + "\n"


def test_longmemeval(run: Any, tmp_path: Path) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=7, seed=1)
    out = tmp_path / "run"
    result = run("longmemeval", "--data", str(data), "--out", str(out), "--preset", "lexical")
    assert result.code == 0, result.err
    assert {p.name for p in out.iterdir()} >= RUN_FILES
    printed = result.json
    assert printed == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert printed["benchmark"] == "longmemeval"
    assert printed["levels"] == ["session", "turn"]
    assert printed["k_values"] == list(LONGMEMEVAL_K)
    assert printed["questions_scored"] == 6  # the seventh question is an abstention question
    assert printed["systems"] == ["engram:lexical", "bm25", "dense"]
    assert printed["results"]["engram:lexical"]["session"]["overall"]["recall_any@10"] == 1.0
    assert len(read_lines(out / "per_question.jsonl")) == 6


def test_longmemeval_pool(run: Any, tmp_path: Path) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=7, seed=3)
    out = tmp_path / "run"
    result = run("longmemeval", "--data", str(data), "--out", str(out), "--preset", "lexical",
                 "--no-baselines", "--pool", "--k", "1,5")  # fmt: skip
    assert result.code == 0, result.err
    printed = result.json
    assert printed["config"]["pool"] is True
    assert printed["questions_scored"] == 6
    items = json.loads(data.read_text("utf-8"))
    assert printed["data"]["pooled_sessions"] == len(
        {s for item in items for s in item["haystack_session_ids"]}
    )
    overall = printed["results"]["engram:lexical"]["turn"]["overall"]
    assert {"recall_all@5", "ndcg_any@1"} <= set(overall)
    again = run("longmemeval", "--data", str(data), "--out", str(out), "--preset", "lexical",
                "--no-baselines", "--k", "1,5")  # fmt: skip
    assert_one_line_error(again, 1, "different settings", "pool")


@pytest.mark.parametrize("level", ["session", "turn"])
def test_longmemeval_granularity(run: Any, tmp_path: Path, level: str) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=3, seed=2)
    out = tmp_path / "run"
    args = ("longmemeval", "--data", str(data), "--out", str(out), "--preset", "lexical",
            "--no-baselines", "--k", "1,5", "--granularity", level)  # fmt: skip
    result = run(*args)
    assert result.code == 0, result.err
    printed = result.json
    assert printed["levels"] == [level]
    assert set(printed["results"]["engram:lexical"]) == {level}
    assert "recall_all@5" in printed["results"]["engram:lexical"][level]["overall"]
    written = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert written["levels"] == ["session", "turn"]  # the files always hold both levels
    other = "turn" if level == "session" else "session"
    pretty = run(*args, "--pretty")  # the same run again: resumed, nothing new to do
    assert pretty.code == 0, pretty.err
    assert f"## {level.capitalize()}-level retrieval" in pretty.out
    assert f"## {other.capitalize()}-level retrieval" not in pretty.out


@pytest.mark.parametrize("benchmark", ["locomo", "longmemeval"])
def test_missing_data_file(run: Any, tmp_path: Path, benchmark: str) -> None:
    out = tmp_path / "run"
    result = run(benchmark, "--data", str(tmp_path / "nope.json"), "--out", str(out))
    assert_one_line_error(result, 1, "not found", "nope.json", "--data", "github.com/")
    assert not out.exists()


def test_resuming_a_finished_run_does_no_new_work(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, out = locomo_file(tmp_path / "locomo.json"), tmp_path / "run"
    args = ("locomo", "--data", str(data), "--out", str(out), "--preset", "lexical")
    first = run(*args)
    assert first.code == 0, first.err
    rows = (out / "per_question.jsonl").read_text(encoding="utf-8")

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(engram.bench.runner._Worker, "__init__", no_work)
    again = run(*args)
    assert again.code == 0, again.err
    assert (out / "per_question.jsonl").read_text(encoding="utf-8") == rows
    drop = ("config", "machine")  # the start time, which the second run rewrites
    assert {k: v for k, v in again.json.items() if k not in drop} == {
        k: v for k, v in first.json.items() if k not in drop
    }


def test_interrupted_run_resumes(run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, out = locomo_file(tmp_path / "locomo.json"), tmp_path / "run"
    args = ("locomo", "--data", str(data), "--out", str(out), "--preset", "lexical")
    real = engram.bench.runner._Worker.run
    calls: list[int] = []

    def interrupt_second(self: Any, unit: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, unit)

    monkeypatch.setattr(engram.bench.runner._Worker, "run", interrupt_second)
    stopped = run(*args)
    assert_one_line_error(stopped, 130, "interrupted", "run the same command again")
    assert [r["id"] for r in read_lines(out / "per_question.jsonl")] == [
        "conv-0#0", "conv-0#1", "conv-0#2",
    ]  # fmt: skip
    monkeypatch.setattr(engram.bench.runner._Worker, "run", real)
    resumed = run(*args)
    assert resumed.code == 0, resumed.err
    assert resumed.json["questions_scored"] == 6
    assert len(read_lines(out / "per_question.jsonl")) == 6


def test_changed_settings_in_the_same_directory(run: Any, tmp_path: Path) -> None:
    data, out = locomo_file(tmp_path / "locomo.json"), tmp_path / "run"
    assert run("locomo", "--data", str(data), "--out", str(out), "--preset", "lexical").code == 0
    result = run("locomo", "--data", str(data), "--out", str(out), "--preset", "hybrid")
    assert_one_line_error(result, 1, "different settings", "systems")


@pytest.mark.parametrize(
    "extra",
    [("--k", "0,5"), ("--k", "one"), ("--k", ","), ("--limit", "0"), ("--workers", "0"),
     ("--preset", "fuzzy")],
)  # fmt: skip
def test_bad_options(run: Any, tmp_path: Path, extra: tuple[str, ...]) -> None:
    data = locomo_file(tmp_path / "locomo.json")
    result = run("locomo", "--data", str(data), "--out", str(tmp_path / "run"), *extra)
    assert_one_line_error(result, 2, extra[0])


def test_bad_granularity(run: Any, tmp_path: Path) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=2)
    result = run("longmemeval", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--granularity", "round")  # fmt: skip
    assert_one_line_error(result, 2, "--granularity")


def test_cli_modes_are_the_runners() -> None:
    from engram.bench.systems import MODES
    from engram.cli.bench import MODES as CLI_MODES

    assert CLI_MODES == MODES


def test_help_states_the_runner_defaults() -> None:
    bench = cli.commands["bench"]
    assert isinstance(bench, type(cli))
    for name, ks in (("locomo", LOCOMO_K), ("longmemeval", LONGMEMEVAL_K)):
        option = next(p for p in bench.commands[name].params if p.name == "k_values")
        assert f"default {','.join(map(str, ks))}" in str(getattr(option, "help", ""))
