"""The wire format of the LLM routes (``/v1/answer``, ``/v1/jobs/process``) and its conversion to
and from :class:`~engram.types.Answer` and :class:`~engram.types.ProcessReport`. Like
:mod:`engram.server.schemas`, shared by the server and :class:`engram.Client`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from engram.read.config import SearchConfig
from engram.server.schemas import DateTime, RecordOut, SearchConfigIn, _In
from engram.types import Answer, JobReport, MemoryRecord, ProcessReport, Usage

__all__ = [
    "AnswerOut",
    "AnswerRequest",
    "JobReportOut",
    "ProcessReportOut",
    "ProcessRequest",
    "UsageOut",
]


class AnswerRequest(_In):
    user_id: str
    question: str
    question_date: DateTime | None = None
    budget: int = Field(3000, description="The context's size in estimated tokens (100-200000).")
    limit: int = Field(20, description="Facts and turns searched for, each.")
    config: Literal["hybrid", "lexical", "semantic"] | SearchConfigIn | None = None

    def search_config(self) -> SearchConfig | str | None:
        return self.config.to_config() if isinstance(self.config, SearchConfigIn) else self.config


class ProcessRequest(_In):
    limit: int = Field(100, description="At most this many jobs (1-1000).")
    user_id: str | None = Field(
        None, description="Only this user's jobs; required with an API key."
    )


class UsageOut(BaseModel):
    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> UsageOut:
        return cls(**usage.as_dict())

    def to_usage(self) -> Usage:
        return Usage(**self.model_dump())


class AnswerOut(BaseModel):
    text: str = Field(description="The answer.")
    citations: list[RecordOut] = Field(description="The records the answer cites.")
    context: list[RecordOut] = Field(description="Every record the model was shown, in order.")
    usage: UsageOut

    @classmethod
    def of(cls, answer: Answer) -> AnswerOut:
        return cls(
            text=answer.text, citations=[RecordOut.of(r) for r in answer.citations],
            context=[RecordOut.of(r) for r in answer.context], usage=UsageOut.of(answer.usage),
        )  # fmt: skip

    def to_answer(self, record: Callable[[RecordOut], MemoryRecord]) -> Answer:
        return Answer(
            self.text, tuple(record(r) for r in self.citations),
            tuple(record(r) for r in self.context), self.usage.to_usage(),
        )  # fmt: skip


class JobReportOut(BaseModel):
    job_id: int
    actions: dict[str, int] = Field(description="How many facts each action touched (ADD, ...).")
    rejected: int = Field(description="Extracted facts rejected (citing no turn of the job).")
    usage: UsageOut
    error: str | None = Field(description="Why the job failed; it stays queued for a retry.")

    @classmethod
    def of(cls, job: JobReport) -> JobReportOut:
        return cls(
            job_id=job.job_id, actions=dict(job.actions), rejected=job.rejected,
            usage=UsageOut.of(job.usage), error=job.error,
        )  # fmt: skip

    def to_job(self) -> JobReport:
        return JobReport(
            self.job_id, dict(self.actions), self.rejected, self.usage.to_usage(), self.error
        )


class ProcessReportOut(BaseModel):
    jobs: list[JobReportOut]
    done: int = Field(description="Jobs processed and committed.")
    failed: int = Field(description="Jobs that failed and stay queued.")
    usage: UsageOut = Field(description="The LLM usage of all of them.")

    @classmethod
    def of(cls, report: ProcessReport) -> ProcessReportOut:
        return cls(
            jobs=[JobReportOut.of(j) for j in report.jobs], done=report.done,
            failed=report.failed, usage=UsageOut.of(report.usage),
        )  # fmt: skip

    def to_report(self) -> ProcessReport:
        return ProcessReport(tuple(j.to_job() for j in self.jobs))
