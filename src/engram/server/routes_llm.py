"""The ``/v1`` routes of the LLM layer (docs/llm.md): fact search, answers and the job queue. Each
one, like those of :mod:`engram.server.routes`, a thin call of
:class:`~engram.server.scoped.ScopedMemory`. On a server without an LLM, answers and job
processing are a ``ConfigurationError`` with status 501; fact search works (it finds the facts
stored, if any)."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter

from engram.server.errors import redact_urls
from engram.server.routes import ERRORS, Mem
from engram.server.schemas import HitOut, SearchRequest, SearchResponse
from engram.server.schemas_llm import AnswerOut, AnswerRequest, ProcessReportOut, ProcessRequest
from engram.types import ProcessReport

__all__ = ["llm_router"]

llm_router = APIRouter(prefix="/v1", responses=ERRORS)  # type: ignore[arg-type]


@llm_router.post("/search/facts", response_model=SearchResponse, tags=["read"])
def search_facts(body: SearchRequest, mem: Mem) -> SearchResponse:
    """The facts most relevant to the query (true now, or at ``as_of``), best first. Facts are
    extracted from the turns by the server's LLM; without one there are none."""
    hits = mem.search(
        body.query, user_id=body.user_id, limit=body.limit, session_id=body.session_id,
        agent_id=body.agent_id, question_date=body.question_date, config=body.search_config(),
        as_of=body.as_of, facts=True,
    )  # fmt: skip
    return SearchResponse(hits=[HitOut.of(h) for h in hits])


@llm_router.post("/answer", response_model=AnswerOut, tags=["read"])
def answer(body: AnswerRequest, mem: Mem) -> AnswerOut:
    """Answer the question from memory with the server's LLM: the best facts (true at
    ``question_date``) and turns, within ``budget`` estimated tokens, in time order. Returns
    the answer, the records it cites, every record the model was shown, and the usage. 503
    (Retry-After) when the LLM endpoint fails, 502 when its answers are unusable, 501 on a
    server without an LLM."""
    found = mem.answer(
        body.question, user_id=body.user_id, question_date=body.question_date,
        budget=body.budget, limit=body.limit, config=body.search_config(),
    )  # fmt: skip
    return AnswerOut.of(found)


@llm_router.post("/jobs/process", response_model=ProcessReportOut, tags=["write"])
def process_jobs(body: ProcessRequest, mem: Mem) -> ProcessReportOut:
    """Extract and consolidate facts for up to ``limit`` queued jobs of ``user_id``, each
    committed on its own; a failed job stays queued with its error. With an API key
    ``user_id`` is required (a key never touches another tenant's jobs) and the key must be
    allowed to write; without keys, no ``user_id`` means every user's jobs."""
    report = mem.process_pending(limit=body.limit, user_id=body.user_id)
    jobs = tuple(replace(j, error=None if j.error is None else redact_urls(j.error))
                 for j in report.jobs)  # fmt: skip
    return ProcessReportOut.of(ProcessReport(jobs))
