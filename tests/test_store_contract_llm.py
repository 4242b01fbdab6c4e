"""The LLM layer's part of the Store contract (run against every backend of conftest): jobs
queued with their turns, leases, consolidations committed whole or not at all, as-of listing,
usage totals, and erasure of all of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest

from engram import ConflictError, NotFoundError, RecordFilter, RecordKind, Store
from engram.store.base import FactChange, Job, Note, Retirement, SessionTail
from engram.types import MemoryRecord, Usage
from test_store_contract import DIM, T0, rec, vec

NOW = T0 + timedelta(days=30)


def fact(rid: str, text: str, sources: tuple[str, ...], *, since: datetime | None = None,
         user: str = "u1") -> MemoryRecord:  # fmt: skip
    return replace(
        rec(rid, text, user=user, kind=RecordKind.FACT, provenance=sources),
        role=None, message_ids=(), valid_from=since,
    )  # fmt: skip


def job(turns: tuple[str, ...], *, user: str = "u1", session: str = "s1", at=T0) -> Job:
    return Job(user, session, turns, at)


def seeded(store: Store) -> Store:
    store.bind_embedder("test", DIM)
    store.add([rec("t1", "I live in Paris"), rec("t2", "I moved to Berlin", seq=1)], vec(0, 1),
              jobs=[job(("t1", "t2"))])  # fmt: skip
    return store


def test_jobs_are_queued_with_their_turns_and_leased(store: Store) -> None:
    seeded(store)
    (claimed,) = store.claim_jobs(now=T0, lease_seconds=60, limit=5)
    assert (claimed.user_id, claimed.session_id, claimed.turn_ids) == ("u1", "s1", ("t1", "t2"))
    assert claimed.attempts == 1 and claimed.id > 0
    assert store.claim_jobs(now=T0 + timedelta(seconds=59), lease_seconds=60, limit=5) == []
    (again,) = store.claim_jobs(now=T0 + timedelta(seconds=61), lease_seconds=60, limit=5)
    assert again.id == claimed.id and again.attempts == 2
    store.release_job(again.id, error="boom", retry_at=T0 + timedelta(hours=1))
    assert store.claim_jobs(now=T0 + timedelta(minutes=59), lease_seconds=60, limit=5) == []
    (late,) = store.claim_jobs(now=T0 + timedelta(hours=1), lease_seconds=60, limit=5)
    assert late.last_error == "boom"
    stats = store.stats("u1")
    assert (stats.pending_jobs, stats.failed_jobs) == (1, 1)


def test_claims_are_oldest_first_per_user_and_limited(store: Store) -> None:
    seeded(store)
    store.add([rec("x1", "hi", user="u2")], vec(2), jobs=[job(("x1",), user="u2")])
    store.add([rec("t3", "more", seq=2)], vec(3), jobs=[job(("t3",))])
    assert [j.turn_ids for j in store.claim_jobs(now=T0, lease_seconds=9, limit=1)] == [
        ("t1", "t2")
    ]
    mine = store.claim_jobs(now=T0, lease_seconds=9, limit=5, user_id="u1")
    assert [j.turn_ids for j in mine] == [("t3",)]
    assert [j.user_id for j in store.claim_jobs(now=T0, lease_seconds=9, limit=5)] == ["u2"]


def test_a_refused_conditional_add_queues_no_job(store: Store) -> None:
    seeded(store)
    stale = SessionTail("u1", "s1", (("t1", "I live in Paris"),))  # t2 came after it
    with pytest.raises(ConflictError):
        store.add([rec("t9", "late", seq=2)], vec(4), expect=stale, jobs=[job(("t9",))])
    assert store.stats("u1").pending_jobs == 1


def test_a_consolidation_commits_everything_at_once(store: Store) -> None:
    seeded(store)
    (claimed,) = store.claim_jobs(now=T0, lease_seconds=60, limit=1)
    paris = fact("f1", "u1 lives in Paris", ("t1",))
    tea = fact("f2", "u1 likes tea", ("t1",))
    store.consolidate(FactChange("u1", add=(paris, tea)), vec(0, 5))
    berlin = fact("f3", "u1 lives in Berlin", ("t2",), since=T0 + timedelta(days=2))
    change = FactChange(
        "u1", add=(berlin,), rewrite=(("f2", "u1 likes green tea"),),
        provenance=(("f2", ("t1", "t2")),),
        retire=(Retirement("f1", berlin.valid_from or T0, NOW, "f3"),),
        notes=(Note("f3", "ADD", "new home"), Note("f1", "SUPERSEDE", "moved", paris.text,
                                                    berlin.text),
               Note("f2", "UPDATE", "more detail")),
        usage=Usage(calls=2, prompt_tokens=100, completion_tokens=20), job_id=claimed.id,
    )  # fmt: skip
    written = store.consolidate(change, vec(1, 6))
    assert {r.id for r in written} == {"f3", "f2"}
    old, green, new = store.get_many("u1", ["f1", "f2", "f3"])
    assert (old.valid_to, old.expired_at, old.superseded_by) == (berlin.valid_from, NOW, "f3")
    assert green.text == "u1 likes green tea" and green.provenance == ("t1", "t2")
    assert new.valid_from == T0 + timedelta(days=2)
    assert {r.id for r in store.derived_from("u1", "t2")} == {"f2", "f3"}
    assert [(e.event, e.reason) for e in store.history("u1", "f1")] == [
        ("ADD", None), ("SUPERSEDE", "moved"),
    ]  # fmt: skip
    assert [(e.event, e.reason) for e in store.history("u1", "f2")][-1] == ("UPDATE", "more detail")
    assert store.history("u1", "f3")[0].reason == "new home"
    np.testing.assert_allclose(store.get_vectors("u1", ["f2"]), vec(6))
    stats = store.stats("u1")
    assert stats.pending_jobs == 0 and stats.records["fact"] == 3
    assert stats.llm == {"extract": {"calls": 2, "failed": 0, "prompt_tokens": 100,
                                     "completion_tokens": 20}}  # fmt: skip
    ref = store.get_refs("u1", ["f1"])[0]
    assert (ref.valid_to, ref.expired_at) == (old.valid_to, NOW)
    hits = store.vector_search(vec(6)[0], RecordFilter("u1", kinds=(RecordKind.FACT,)), 1)
    assert hits[0][0] == "f2"


@pytest.mark.parametrize("problem", ["job gone", "not a fact", "another user's"])
def test_a_consolidation_that_cannot_commit_writes_nothing(store: Store, problem: str) -> None:
    seeded(store)
    store.add([rec("o1", "other", user="u2")], vec(2))
    store.consolidate(FactChange("u2", add=(fact("g1", "u2 fact", ("o1",), user="u2"),)), vec(3))
    (claimed,) = store.claim_jobs(now=T0, lease_seconds=60, limit=1, user_id="u1")
    new = fact("f9", "u1 owns a boat", ("t1",))
    target = {"job gone": "none", "not a fact": "t1", "another user's": "g1"}[problem]
    rewrite = () if target == "none" else ((target, "changed"),)
    job_id = claimed.id + 100 if problem == "job gone" else claimed.id
    change = FactChange("u1", add=(new,), rewrite=rewrite, usage=Usage(calls=1), job_id=job_id)
    with pytest.raises(NotFoundError):
        store.consolidate(change, vec(*range(1 + len(rewrite))))
    assert store.get_many("u1", ["f9"]) == [] and store.stats("u1").llm == {}
    assert store.get_many("u1", ["t1"])[0].text == "I live in Paris"
    assert store.get_many("u2", ["g1"])[0].text == "u2 fact"
    assert store.stats("u1").pending_jobs == 1


def test_list_as_of_follows_both_kinds_of_time(store: Store) -> None:
    seeded(store)
    paris = fact("f1", "u1 lives in Paris", ("t1",))
    berlin = fact("f2", "u1 lives in Berlin", ("t2",), since=T0 + timedelta(days=2))
    store.consolidate(FactChange("u1", add=(paris, berlin)), vec(0, 1))
    store.consolidate(
        FactChange("u1", retire=(Retirement("f1", T0 + timedelta(days=2), NOW, "f2"),)),
        np.zeros((0, DIM), np.float32),
    )

    def listed(when: datetime | None, kinds=(RecordKind.FACT,)) -> list[str]:
        where = RecordFilter("u1", kinds=kinds, as_of=when)
        return [r.id for r in store.list(where, limit=10)]

    assert listed(T0 + timedelta(days=1)) == ["f1"]
    assert listed(T0 + timedelta(days=2)) == ["f2"]  # valid_to is exclusive
    assert sorted(listed(None)) == ["f1", "f2"]
    assert listed(T0 - timedelta(days=1)) == []  # said after that: not yet known to be true
    turns = (RecordKind.TURN,)
    assert listed(T0 + timedelta(seconds=30), turns) == ["t1"]  # t2 was said a minute later
    assert listed(T0 + timedelta(minutes=1), turns) == ["t1", "t2"]


def test_record_usage_adds_up_per_purpose(store: Store) -> None:
    seeded(store)
    store.record_usage("u1", "answer", Usage(calls=1, prompt_tokens=10, completion_tokens=2))
    store.record_usage("u1", "answer", Usage(calls=1, failed=1, prompt_tokens=5))
    store.record_usage("u2", "answer", Usage(calls=7))
    assert store.stats("u1").llm == {"answer": {"calls": 2, "failed": 1, "prompt_tokens": 15,
                                                "completion_tokens": 2}}  # fmt: skip
    assert store.stats().llm["answer"]["calls"] == 9


def test_forget_removes_jobs_and_usage(store: Store) -> None:
    seeded(store)
    store.add([rec("s2t", "x", session="s2")], vec(3), jobs=[job(("s2t",), session="s2")])
    store.record_usage("u1", "answer", Usage(calls=1))
    store.forget("u1", session_id="s2")
    assert store.stats("u1").pending_jobs == 1  # only s1's is left
    store.forget("u1")
    stats = store.stats("u1")
    assert stats.pending_jobs == 0 and stats.llm == {}
    assert store.claim_jobs(now=NOW, lease_seconds=1, limit=9) == []


def test_deleting_a_turn_deletes_the_facts_citing_it(store: Store) -> None:
    seeded(store)
    store.consolidate(FactChange("u1", add=(fact("f1", "u1 lives in Paris", ("t1",)),)), vec(0))
    assert set(store.delete("u1", "t1")) == {"t1", "f1"}
    assert store.get_many("u1", ["f1"]) == []
    assert all(e.old_text is None and e.new_text is None for e in store.history("u1", "f1"))
