"""The fact pipeline: a queued job's turns -> extraction -> consolidation -> one commit.

A job is processed at most once to completion: its facts, their audit notes, the LLM usage and
the job's deletion are one transaction (``Store.consolidate``). When the LLM fails, nothing of
the job is written; the job goes back to the queue with the error and a retry time, and the
verbatim turns it points to were committed long before. A worker that dies mid-job leaves the
job leased; another worker claims it when the lease ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from engram.embed.base import Vectors
from engram.errors import LLMError, NotFoundError
from engram.llm.base import LLM, UsageMeter
from engram.store.base import Job, Store
from engram.types import JobReport, ProcessReport, RecordFilter, RecordKind, valid_at
from engram.write.consolidate import (
    Action,
    ConsolidationConfig,
    Decision,
    Decisions,
    Triage,
    conflict_prompt,
    decide,
    fact_record,
    plan_change,
    triage,
)
from engram.write.extract import Candidate, extract

__all__ = ["FactPipeline"]

log = logging.getLogger("engram.facts")


@dataclass(frozen=True)
class FactPipeline:
    """Extraction (``batch`` turns per call) and consolidation for queued jobs."""

    store: Store
    llm: LLM
    embed: Callable[[Sequence[str]], Vectors]
    batch: int = 20
    config: ConsolidationConfig = field(default_factory=ConsolidationConfig)
    lease_seconds: float = 300.0
    retry_seconds: float = 30.0

    def process_pending(
        self, *, now: Callable[[], datetime], limit: int, user_id: str | None = None
    ) -> ProcessReport:
        """Claim and process up to ``limit`` jobs, one at a time."""
        reports: list[JobReport] = []
        while len(reports) < limit:
            jobs = self.store.claim_jobs(
                now=now(), lease_seconds=self.lease_seconds, limit=1, user_id=user_id
            )
            if not jobs:
                break
            reports.append(self.process(jobs[0], now()))
        return ProcessReport(tuple(reports))

    def process(self, job: Job, now: datetime) -> JobReport:
        meter = UsageMeter()
        try:
            return self._process(job, now, meter)
        except LLMError as exc:
            delay = self.retry_seconds * 2 ** min(job.attempts - 1, 7)
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "job %s (session %r) failed, retried later: %s", job.id, job.session_id, error
            )
            self.store.release_job(job.id, error=error, retry_at=now + timedelta(seconds=delay))
            self.store.record_usage(job.user_id, "extract", meter.total)  # paid for, all the same
            return JobReport(job.id, {}, 0, meter.total, error)

    def _process(self, job: Job, now: datetime, meter: UsageMeter) -> JobReport:
        turns = self.store.get_many(job.user_id, job.turn_ids)  # a deleted turn is gone
        candidates, rejected = extract(self.llm, turns, batch=self.batch, meter=meter)
        vectors = self.embed([c.statement for c in candidates])
        settled = [
            self._triage(job.user_id, c, v) for c, v in zip(candidates, vectors, strict=True)
        ]
        decided = self._decide(candidates, settled, meter)
        seq = max((t.seq for t in turns if t.seq is not None), default=None)
        actions = [
            (c, a, fact_record(c, user_id=job.user_id, seq=seq, now=now, model=self.llm.name), v)
            for c, a, v in zip(candidates, decided, vectors, strict=True)
        ]
        change, added, rewrites = plan_change(
            job.user_id, actions, now=now, usage=meter.total, job_id=job.id
        )
        fresh = self.embed([text for _, text in rewrites])
        try:
            self.store.consolidate(change, np.vstack([*added, fresh]).astype(np.float32))
        except NotFoundError as exc:  # another worker finished the job, or a fact was deleted
            log.warning("job %s not committed: %s", job.id, exc)
            return JobReport(job.id, {}, len(rejected), meter.total, str(exc))
        counts: dict[str, int] = {}
        for action in decided:
            counts[action.verb] = counts.get(action.verb, 0) + 1
        return JobReport(job.id, counts, len(rejected), meter.total)

    def _triage(self, user_id: str, candidate: Candidate, vector: Vectors) -> Triage:
        where = RecordFilter(user_id, kinds=(RecordKind.FACT,))
        near = self.store.vector_search(vector, where, 4 * self.config.max_related)
        facts = [f for f in self.store.get_many(user_id, [i for i, _ in near]) if valid_at(f, None)]
        known = list(
            zip(facts, self.store.get_vectors(user_id, [f.id for f in facts]), strict=True)
        )
        return triage(candidate, vector, known, self.config)

    def _decide(
        self, candidates: Sequence[Candidate], settled: Sequence[Triage], meter: UsageMeter
    ) -> list[Action]:
        asked = [i for i, s in enumerate(settled) if s.kind == "ask"]
        answers: dict[int, Decision] = {}
        labels: list[dict[str, str]] = []
        if asked:
            messages, labels = conflict_prompt([(candidates[i], settled[i].related) for i in asked])
            reply = self.llm.complete_json(messages, Decisions, meter=meter)
            for decision in reply.decisions:  # the first decision for a fact counts
                answers.setdefault(decision.fact, decision)
        shown = dict(zip(asked, labels, strict=True))
        return [
            decide(s, answers.get(asked.index(i) + 1) if i in shown else None, shown.get(i, {}))
            for i, s in enumerate(settled)
        ]
