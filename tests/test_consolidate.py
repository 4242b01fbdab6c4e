"""Consolidation and extraction parsing as pure functions: every branch of triage, decide and
plan_change, and the checks on what an extraction model says."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from engram.types import MemoryRecord, RecordKind, Usage
from engram.write.consolidate import (
    Action,
    ConsolidationConfig,
    Decision,
    Triage,
    decide,
    fact_record,
    normalize,
    plan_change,
    triage,
)
from engram.write.extract import Extraction, extractable, parse_extraction

T0 = datetime(2023, 5, 8, 14, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def turn(i: int, text: str = "x", role: str = "user") -> MemoryRecord:
    return MemoryRecord(
        id=f"turn{i}", kind=RecordKind.TURN, text=text, user_id="u", session_id="s",
        agent_id=None, role=role, name=None, seq=i, timestamp=T0, created_at=T0,
    )  # fmt: skip


def fact(fid: str, text: str, sources=("turn0",), since=None) -> MemoryRecord:
    return MemoryRecord(
        id=fid, kind=RecordKind.FACT, text=text, user_id="u", session_id="s", agent_id=None,
        role=None, name=None, seq=0, timestamp=T0, created_at=T0, provenance=tuple(sources),
        valid_from=since,
    )  # fmt: skip


def extraction(*facts: dict) -> Extraction:
    base = {"subject": "user", "confidence": 0.8, "when": None}
    return Extraction.model_validate({"facts": [base | f for f in facts]})


def candidate(statement: str, sources=("turn1",), when=None):
    turns = [turn(0), turn(1)]
    labels = {"turn0": "t1", "turn1": "t2"}
    facts = {"statement": statement, "sources": [labels[s] for s in sources], "when": when}
    kept, _ = parse_extraction(extraction(facts), turns)
    return kept[0]


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_parse_resolves_relative_dates_against_the_turn_date():
    kept, rejected = parse_extraction(
        extraction({"statement": "user went to Rome", "sources": ["t1"], "when": "last May"},
                   {"statement": "user met Bo", "sources": ["t1"], "when": "yesterday"},
                   {"statement": "user runs", "sources": ["t1"], "when": "sometime"}),
        [turn(0)],
    )  # fmt: skip
    assert rejected == []
    assert [c.valid_from for c in kept] == [
        datetime(2022, 5, 1, tzinfo=UTC),  # "last May", said in May 2023
        datetime(2023, 5, 7, tzinfo=UTC),
        None,
    ]


def test_parse_rejects_unknown_sources_and_empty_statements_and_dedupes_sources():
    kept, rejected = parse_extraction(
        extraction({"statement": "a", "sources": ["t7"]}, {"statement": "  ", "sources": ["t1"]},
                   {"statement": "  user   likes  tea ", "sources": ["t1", "t1"]}),
        [turn(0)],
    )  # fmt: skip
    assert [r.reason.split(":")[0] for r in rejected] == [
        "cites turns it was not shown", "empty statement",
    ]  # fmt: skip
    assert [(c.statement, c.sources) for c in kept] == [("user likes tea", ("turn0",))]


def test_extractable_skips_system_text_and_assistant_boilerplate():
    turns = [
        turn(0, "You are a bot", "system"),
        turn(1, "I'm an AI and cannot have opinions.", "assistant"),
        turn(2, "How can I help you today?", "assistant"),
        turn(3, "Try the Lisbon tram 28.", "assistant"),
        turn(4, "As an AI, hmm", "user"),  # a user may say anything
    ]
    assert [t.seq for t in extractable(turns)] == [3, 4]


def test_normalize_folds_case_accents_punctuation_and_space():
    assert normalize("  Zoë  LIKES crème-brûlée! ") == normalize("zoe likes creme brulee")


def test_triage_branches():
    cfg = ConsolidationConfig(duplicate=0.95, related=0.6, max_related=2)
    paris = fact("f1", "User lives in Paris.")
    known = [(paris, unit(1, 0, 0)), (fact("f2", "User likes tea"), unit(0, 1, 0))]
    c = candidate("user lives in paris")
    assert triage(c, unit(0, 0, 1), known, cfg) == Triage("noop", paris, similarity=1.0)
    other = candidate("User resides in Paris")
    merged = triage(other, unit(1, 0.01, 0), known, cfg)
    assert merged.kind == "merge" and merged.target == paris
    asked = triage(other, unit(1, 0.5, 0), known, cfg)
    assert asked.kind == "ask" and asked.related == (paris,)
    assert triage(other, unit(0, 0, 1), known, cfg).kind == "add"
    assert triage(other, unit(0, 0, 1), [], cfg).kind == "add"


@pytest.mark.parametrize(
    ("decision", "verb", "reason"),
    [
        (None, "ADD", "the model gave no decision for it"),
        (Decision(fact=1, action="ADD", reason="new"), "ADD", "new"),
        (Decision(fact=1, action="SUPERSEDE", target="k1", reason="moved"), "SUPERSEDE", "moved"),
        (Decision(fact=1, action="NOOP", target="k1", reason="same"), "NOOP", "same"),
        (
            Decision(
                fact=1,
                action="UPDATE",
                target="k1",
                text="User lives in central Paris",
                reason="detail",
            ),
            "UPDATE",
            "detail",
        ),
        (
            Decision(fact=1, action="UPDATE", target="k1", reason="x"),
            "ADD",
            "the model asked for an UPDATE without text",
        ),
        (
            Decision(fact=1, action="SUPERSEDE", target="k7", reason="x"),
            "ADD",
            "the model named an unknown fact 'k7'",
        ),
        (
            Decision(fact=1, action="SUPERSEDE", reason="x"),
            "ADD",
            "the model named an unknown fact None",
        ),
    ],
)
def test_decide_checks_the_models_answer(decision, verb, reason):
    paris = fact("f1", "User lives in Paris")
    action = decide(Triage("ask", related=(paris,)), decision, {"k1": "f1"})
    assert (action.verb, action.reason) == (verb, reason)
    assert action.target == (paris if verb not in ("ADD",) else None)


def test_decide_settled_branches_need_no_model():
    paris = fact("f1", "User lives in Paris")
    assert decide(Triage("noop", paris), None, {}).verb == "NOOP"
    assert decide(Triage("merge", paris, similarity=0.97), None, {}).verb == "MERGE"
    assert decide(Triage("add"), None, {}).verb == "ADD"


def plan(*items):
    return plan_change("u", list(items), now=NOW, usage=Usage(calls=2), job_id=7)


def item(c, action):
    record = fact_record(c, user_id="u", seq=1, now=NOW, model="m")
    return (c, action, record, unit(1, 0, 0))


def test_plan_add_noop_merge_update_supersede():
    paris = fact(
        "f1", "User lives in Paris", sources=("turn0",), since=datetime(2020, 1, 1, tzinfo=UTC)
    )
    tea = fact("f2", "User likes tea", sources=("turn0",))
    berlin = candidate("User lives in Berlin", when="yesterday")
    again = candidate("user likes tea")
    change, vectors, rewrites = plan(
        item(berlin, Action("SUPERSEDE", "moved", paris)),
        item(again, Action("NOOP", "same", tea)),
    )
    (new,) = change.add
    assert new.text == "User lives in Berlin" and len(vectors) == 1 and rewrites == []
    (retired,) = change.retire
    assert (retired.record_id, retired.superseded_by, retired.expired_at) == ("f1", new.id, NOW)
    assert retired.valid_to == datetime(2023, 5, 7, tzinfo=UTC)
    assert change.provenance == (("f2", ("turn0", "turn1")),)  # said again: cites both
    assert [(n.record_id, n.event) for n in change.notes] == [
        (new.id, "ADD"), ("f1", "SUPERSEDE"), ("f2", "MERGE"),
    ]  # fmt: skip
    assert change.job_id == 7 and change.usage == Usage(calls=2)

    update = Action("UPDATE", "detail", tea, "User likes green tea")
    change, vectors, rewrites = plan(item(candidate("User likes green tea"), update))
    assert change.add == () and vectors == [] and rewrites == [("f2", "User likes green tea")]
    assert [n.event for n in change.notes] == ["UPDATE"]


def test_plan_noop_without_new_sources_is_a_noop_event():
    tea = fact("f2", "User likes tea", sources=("turn1",))
    change, _, _ = plan(item(candidate("user likes tea"), Action("NOOP", "same", tea)))
    assert change.provenance == () and [n.event for n in change.notes] == ["NOOP"]


def test_plan_changes_a_known_fact_once_per_job():
    paris = fact("f1", "User lives in Paris")
    first = item(candidate("User lives in Berlin"), Action("SUPERSEDE", "moved", paris))
    second = item(candidate("User lives in Rome"), Action("SUPERSEDE", "moved", paris))
    change, vectors, _ = plan(first, second)
    assert [r.text for r in change.add] == ["User lives in Berlin", "User lives in Rome"]
    assert len(change.retire) == 1 and len(vectors) == 2
    assert change.notes[-1].reason == "f1 was already changed by this job"


def test_plan_the_same_statement_twice_in_one_job_is_added_once_citing_both():
    first, again = candidate("User likes tea", sources=("turn0",)), candidate("user likes tea")
    change, vectors, _ = plan(item(first, Action("ADD", "new")), item(again, Action("ADD", "new")))
    assert len(change.add) == 1 and len(vectors) == 1
    assert change.add[0].provenance == ("turn0", "turn1")


def test_a_superseding_fact_never_ends_the_old_one_before_it_began():
    paris = fact("f1", "User lives in Paris", since=datetime(2024, 1, 1, tzinfo=UTC))
    berlin = candidate("User lives in Berlin", when="2023-01-01")
    change, _, _ = plan(item(berlin, Action("SUPERSEDE", "moved", paris)))
    assert change.retire[0].valid_to == datetime(2024, 1, 1, tzinfo=UTC)


def test_fact_ids_are_stable_for_the_same_statement():
    a = fact_record(candidate("User likes tea"), user_id="u", seq=1, now=NOW, model="m")
    b = fact_record(candidate("user likes TEA!"), user_id="u", seq=3, now=T0, model="x")
    assert a.id == b.id and a.kind is RecordKind.FACT


def test_parse_falls_back_to_a_time_phrase_in_the_statement():
    kept, _ = parse_extraction(
        extraction({"statement": "user met Bo yesterday", "sources": ["t1"], "when": None}),
        [turn(0)],
    )
    assert kept[0].valid_from == datetime(2023, 5, 7, tzinfo=UTC)
