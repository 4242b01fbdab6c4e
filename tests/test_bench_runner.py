"""The benchmark runner end to end, on synthetic data with the fast HashEmbedder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engram.bench import make_synthetic_longmemeval, run_locomo, run_longmemeval
from engram.bench.report import read_rows
from engram.errors import ConfigurationError, InvalidInputError

FACTS = [
    ("I adopted a cat called Miso last week.", "What is the name of Ann's cat?"),
    ("My sister Clara moved to Lisbon in spring.", "Where did Ann's sister Clara move?"),
    ("I run the harbor marathon every October.", "Which marathon does Ann run?"),
    ("We planted tomatoes and basil in the garden.", "What did Ann plant in the garden?"),
]
FILLER = [
    "How was your weekend?", "Pretty quiet, I read a book.", "Work has been busy lately.",
    "Did you watch the game?", "I tried a new coffee place.", "The weather is lovely today.",
]  # fmt: skip


def locomo_file(path: Path, conversations: int = 2) -> Path:
    samples: list[dict[str, Any]] = []
    for c in range(conversations):
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
                       "category": 1 + s % 4})  # fmt: skip
        qa.append({"question": "Bo's dog?", "adversarial_answer": "Rex", "evidence": ["D1:1"],
                   "category": 5})  # fmt: skip
        samples.append({"sample_id": f"conv-{c}", "conversation": conv, "qa": qa})
    path.write_text(json.dumps(samples), encoding="utf-8")
    return path


def test_locomo_end_to_end(tmp_path: Path) -> None:
    data = locomo_file(tmp_path / "locomo.json")
    out = tmp_path / "run"
    summary = run_locomo(
        data, out, preset=["lexical", "hybrid"], embedder="hash", k_values=[1, 5], modes=["named"]
    )
    assert {p.name for p in out.iterdir()} >= {
        "config.json", "per_question.jsonl", "summary.json", "summary.md",
    }  # fmt: skip
    rows = read_rows(out)
    assert len(rows) == 8  # 4 scorable questions per conversation; category 5 is not run
    assert summary["systems"] == ["engram:lexical", "engram:hybrid", "bm25", "dense"]
    lexical = summary["results"]["engram:lexical"]["turn"]
    assert lexical["overall"]["n"] == 8
    assert lexical["overall"]["recall@5"] == 1.0  # each question's words are in its evidence
    assert summary["results"]["bm25"]["turn"]["overall"]["recall@5"] == 1.0
    assert set(lexical) == {"overall", "1", "2", "3", "4"}
    first = rows[0]
    assert first["id"] == "conv-0#0" and first["evidence"] == ["D1:4"]
    for result in first["results"].values():
        assert len(result["turns"]) <= 5
        assert all(t.startswith("D") for t in result["turns"])
    markdown = (out / "summary.md").read_text(encoding="utf-8")
    assert "| engram:hybrid | recall | 8 |" in markdown
    assert "1 (multi-hop)" in markdown
    assert summary["data"]["adversarial"] == 2


def test_locomo_runs_both_input_modes_by_default(tmp_path: Path) -> None:
    data = locomo_file(tmp_path / "locomo.json")
    summary = run_locomo(data, tmp_path / "run", preset="lexical", embedder="hash", baselines=[])
    assert summary["systems"] == ["engram:lexical", "engram:lexical/plain"]
    assert set(summary["config"]["presets"]) == {"engram:lexical", "engram:lexical/plain"}
    plain = summary["results"]["engram:lexical/plain"]["turn"]["overall"]
    assert plain["n"] == 8 and plain["recall@10"] == 1.0
    with pytest.raises(InvalidInputError, match="input modes"):
        run_locomo(data, tmp_path / "bad", preset="lexical", embedder="hash", modes=["loud"])


def test_longmemeval_pooled(tmp_path: Path) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=7, seed=4)
    items = json.loads(data.read_text(encoding="utf-8"))
    every = {s for item in items for s in item["haystack_session_ids"]}
    summary = run_longmemeval(data, tmp_path / "run", preset="lexical", embedder="hash", pool=True)
    assert summary["config"]["pool"] is True
    assert summary["data"]["pooled_sessions"] == len(every)
    assert summary["questions_scored"] == 6  # the seventh is an abstention question
    rows = read_rows(tmp_path / "run")
    seen = {s for row in rows for s in row["results"]["engram:lexical"]["sessions"]}
    own = {s for row in rows for s in row["evidence_sessions"]}
    assert seen - own  # sessions of other questions' haystacks are searched too
    for row in rows:
        assert set(row["results"]["bm25"]["sessions"]) <= every


def test_longmemeval_pooled_unit_keeps_each_session_once() -> None:
    from engram.bench.longmemeval import LongMemEvalItem as Item
    from engram.bench.longmemeval import LongMemEvalSession, LongMemEvalTurn, to_pooled_unit

    when = datetime(2023, 5, 1, tzinfo=UTC)
    shared = LongMemEvalSession("s1", when, (LongMemEvalTurn("user", "hi", True),))
    other = LongMemEvalSession("s2", when, (LongMemEvalTurn("user", "yo"),))
    items = [
        Item("q1", "t", "hi?", "a", when, (shared,), ("s1",)),
        Item("q2_abs", "t", "yo?", "a", when, (shared, other), ()),
        Item("q3", "t", "yo?", "a", when, (other, shared), ("s2",)),
    ]
    unit = to_pooled_unit(items)
    assert [s.id for s in unit.sessions] == ["s1", "s2"]
    assert [q.id for q in unit.questions] == ["q1", "q3"]
    assert unit.questions[0].turn_evidence == ("s1:1",)


def test_locomo_limit_and_resume(tmp_path: Path) -> None:
    data = locomo_file(tmp_path / "locomo.json")
    out = tmp_path / "run"
    run_locomo(data, out, preset="lexical", embedder="hash", limit=3, baselines=["bm25"])
    assert [r["id"] for r in read_rows(out)] == ["conv-0#0", "conv-0#1", "conv-0#2"]
    summary = run_locomo(data, out, preset="lexical", embedder="hash", limit=6, baselines=["bm25"])
    ids = [r["id"] for r in read_rows(out)]
    assert ids == ["conv-0#0", "conv-0#1", "conv-0#2", "conv-0#3", "conv-1#0", "conv-1#1"]
    assert summary["questions_scored"] == 6
    with pytest.raises(ConfigurationError):
        run_locomo(data, out, preset="hybrid", embedder="hash", limit=6, baselines=["bm25"])
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["presets"]["engram:lexical"]["semantic"] is False
    config["presets"]["engram:lexical"]["candidates"] = 100  # the preset was tuned since
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="presets"):
        run_locomo(data, out, preset="lexical", embedder="hash", limit=6, baselines=["bm25"])


def test_longmemeval_end_to_end(tmp_path: Path) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=7, seed=1)
    out = tmp_path / "run"
    summary = run_longmemeval(data, out, preset="lexical", embedder="hash")
    rows = read_rows(out)
    assert len(rows) == 6  # the seventh question is an abstention question
    assert summary["levels"] == ["session", "turn"]
    for system in ("engram:lexical", "bm25", "dense"):
        for level in ("session", "turn"):
            overall = summary["results"][system][level]["overall"]
            assert overall["n"] == 6
            assert {"recall_any@50", "recall_all@5", "ndcg_any@10"} <= set(overall)
            assert all(0.0 <= v <= 1.0 for k, v in overall.items() if k != "n")
    lexical = summary["results"]["engram:lexical"]["session"]["overall"]
    assert lexical["recall_any@10"] == 1.0
    row = rows[0]
    assert row["evidence_sessions"] and row["evidence"]
    result = row["results"]["engram:lexical"]
    assert result["sessions"][0] in row["evidence_sessions"]
    assert all(":" in t for t in result["turns"])


def test_process_pool(tmp_path: Path) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=4, seed=2)
    one = run_longmemeval(data, tmp_path / "one", preset="lexical", embedder="hash", workers=1)
    two = run_longmemeval(data, tmp_path / "two", preset="lexical", embedder="hash", workers=2)

    def metrics(run: str) -> dict[str, Any]:
        rows = read_rows(tmp_path / run)
        return {r["id"]: {n: x["metrics"] for n, x in r["results"].items()} for r in rows}

    assert metrics("one") == metrics("two")
    assert one["questions_scored"] == two["questions_scored"] == 4


def test_bad_arguments(tmp_path: Path) -> None:
    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=2)
    with pytest.raises(InvalidInputError):
        run_longmemeval(data, tmp_path / "r", embedder="hash", k_values=[0, 5])
    with pytest.raises(InvalidInputError):
        run_longmemeval(data, tmp_path / "r", embedder="hash", limit=0)
    with pytest.raises(InvalidInputError):
        run_longmemeval(data, tmp_path / "r", embedder="hash", baselines=["splade"])
    with pytest.raises(InvalidInputError):
        run_longmemeval(data, tmp_path / "r", embedder="hash", preset="nonsense")


def test_a_disk_cache_embeds_the_haystack_once_across_runs_and_never_the_questions(
    tmp_path: Path,
) -> None:
    from engram import DiskCachedEmbedder, HashEmbedder

    data = locomo_file(tmp_path / "locomo.json")
    path = tmp_path / "vectors.sqlite"
    first = run_locomo(data, tmp_path / "one", preset="hybrid",
                       embedder=DiskCachedEmbedder(HashEmbedder(), path))  # fmt: skip
    with DiskCachedEmbedder(HashEmbedder(), path) as probe:
        stored = probe.entries()
    assert stored > 0
    warm = DiskCachedEmbedder(HashEmbedder(), path)
    second = run_locomo(data, tmp_path / "two", preset="hybrid", embedder=warm)
    assert warm.misses == 0 and warm.hits > 0  # every haystack text came from the file
    assert warm.entries() == stored  # and the questions, embedded by the model, were not added
    assert second["results"] == first["results"]
    rankings = [
        [r["results"][s]["turns"] for s in r["results"]] for r in read_rows(tmp_path / "one")
    ]
    assert rankings == [
        [r["results"][s]["turns"] for s in r["results"]] for r in read_rows(tmp_path / "two")
    ]


def test_questions_that_share_sessions_embed_them_once(tmp_path: Path) -> None:
    from collections import Counter
    from collections.abc import Sequence

    from engram import HashEmbedder
    from engram.embed import Vectors

    class Counting(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.seen: Counter[str] = Counter()

        def embed_batch(self, texts: Sequence[str]) -> Vectors:
            self.seen.update(texts)
            return super().embed_batch(texts)

    data = make_synthetic_longmemeval(tmp_path / "lme.json", n_questions=6, seed=3)
    items = json.loads(data.read_text())
    questions = {i["question"] for i in items}
    turns = Counter(t["content"] for i in items for s in i["haystack_sessions"] for t in s)
    assert max(turns.values()) > 1  # the filler sessions recur across questions
    model = Counting()
    run_longmemeval(data, tmp_path / "run", preset="hybrid", embedder=model, baselines=("dense",))
    haystack = {t: n for t, n in model.seen.items() if t not in questions}
    assert haystack and max(haystack.values()) == 1  # each haystack text embedded once per run
