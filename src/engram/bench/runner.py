"""Run LoCoMo or LongMemEval retrieval through Engram's public API, next to the BM25 and dense
baselines, and write a run directory (see :mod:`engram.bench.report`).

- LoCoMo: one in-memory store per conversation; each session added with its date, each turn with
  its ``dia_id`` as id and its speaker as name (``speaker_a`` as role "user"); every question
  with evidence (category 5 excluded) searched once; the ranked ``dia_id``s are scored.
- LongMemEval: one store per question; turn ids ``"<session_id>:<n>"``; the turn ranking comes
  from ``search``, the session ranking from ``search_sessions``; abstention questions skipped.
  With ``pool``: one store for the whole file (every session of every haystack, each once) and
  every question searched against all of it.
- Input modes (LoCoMo runs both by default): ``named`` (name field, roles, question date) and
  ``plain`` (role only, the speaker inside the text, no question date); see
  :mod:`engram.bench.systems`.

``limit`` takes the first N scorable questions in file order; questions already in the output
directory are not run again. ``workers > 1`` runs work units in a process pool, each worker with
its own embedder. An embedder wrapped in a :class:`~engram.DiskCachedEmbedder` (``engram bench
--embed-cache PATH``) embeds each haystack text once across questions and runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import engram
from engram import PRESETS, DiskCachedEmbedder
from engram.bench import locomo, longmemeval
from engram.bench.corpus import Question, WorkUnit, clean_sessions
from engram.bench.metrics import evaluate_retrieval, evidence_recall
from engram.bench.report import (
    append_rows,
    completed_ids,
    prepare_run_dir,
    read_rows,
    write_summary,
)
from engram.bench.summary import render_markdown, summarise, write_plots
from engram.bench.systems import (
    BASELINES,
    MODES,
    PLAIN,
    EmbedderSpec,
    MemoEmbedder,
    Ranking,
    embedder_name,
    make_embedder,
    make_system,
    system_names,
)
from engram.embed import SentenceTransformerEmbedder
from engram.errors import InvalidInputError

__all__ = ["LOCOMO_K", "LONGMEMEVAL_K", "run_locomo", "run_longmemeval"]

LOCOMO_K = (1, 5, 10, 20)
# Haystack vectors a worker keeps between questions (LongMemEval's haystacks share sessions):
# ~1.5 KB each for a 384-dimensional model, so ~300 MB, plus the texts.
MEMO_VECTORS = 200_000
LONGMEMEVAL_K = (1, 3, 5, 10, 30, 50)
Row = dict[str, Any]


@dataclass(frozen=True)
class _Spec:
    benchmark: str  # "locomo" | "longmemeval"
    systems: tuple[str, ...]
    embedder: EmbedderSpec
    k_values: tuple[int, ...]
    threads: int | None = None  # torch threads per worker process


def score_locomo(question: Question, ranking: Ranking, k_values: Sequence[int]) -> Row:
    return {"turn": {f"recall@{k}": evidence_recall(ranking.turns, question.turn_evidence, k)
                     for k in k_values}}  # fmt: skip


def score_longmemeval(question: Question, ranking: Ranking, k_values: Sequence[int]) -> Row:
    out: Row = {}
    for level, ranked, correct in (
        ("session", ranking.sessions, question.session_evidence),
        ("turn", ranking.turns, question.turn_evidence),
    ):
        if not correct:  # no evidence at this level: left out of its means
            out[level] = None
            continue
        metrics: dict[str, float] = {}
        for k in k_values:
            scores = evaluate_retrieval(ranked, correct, k)
            metrics[f"recall_any@{k}"] = scores.recall_any
            metrics[f"recall_all@{k}"] = scores.recall_all
            metrics[f"ndcg_any@{k}"] = scores.ndcg_any
        out[level] = metrics
    return out


class _Worker:
    """Builds every system's index for a unit, asks its questions, scores the rankings."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        inner = make_embedder(spec.embedder)
        # Questions are embedded by the model itself, never from a disk cache: a run repeated
        # with a warm cache reports the same per-question latency.
        model = inner.inner if isinstance(inner, DiskCachedEmbedder) else inner
        if spec.threads and isinstance(model, SentenceTransformerEmbedder):
            import torch

            torch.set_num_threads(spec.threads)
        self.embedder = MemoEmbedder(inner, asking=model, keep=MEMO_VECTORS)
        sessions = spec.benchmark == "longmemeval"
        self.systems = [
            make_system(n, self.embedder, sessions=sessions, query_embedder=model)
            for n in spec.systems
        ]
        self.score = score_longmemeval if sessions else score_locomo

    def run(self, unit: WorkUnit) -> list[Row]:
        corpus = clean_sessions(unit.sessions)
        limit = max(self.spec.k_values)
        results: dict[str, Row] = {q.id: {} for q in unit.questions}
        try:
            for system in self.systems:
                self.embedder.recording = True
                start = time.perf_counter()
                index = system.build(corpus)
                built = time.perf_counter() - start
                self.embedder.recording = False
                try:
                    for question in unit.questions:
                        start = time.perf_counter()
                        ranking = index.rank(question, limit)
                        ms = 1000 * (time.perf_counter() - start)
                        results[question.id][system.name] = {
                            "turns": list(ranking.turns),
                            "sessions": list(ranking.sessions),
                            "metrics": self.score(question, ranking, self.spec.k_values),
                            "ms": round(ms, 3),
                            "index_s": round(built, 3),
                        }
                finally:
                    index.close()
        finally:
            self.embedder.trim()
        return [_row(q, results[q.id]) for q in unit.questions]


def _row(question: Question, results: Row) -> Row:
    row: Row = {"id": question.id, "group": question.group, "question": question.text}
    row["question_date"] = question.date.isoformat() if question.date else None
    row.update(question.meta)
    row["evidence"] = list(question.turn_evidence)
    if question.session_evidence:
        row["evidence_sessions"] = list(question.session_evidence)
    row["results"] = results
    return row


_WORKER: _Worker | None = None


def _init_worker(spec: _Spec) -> None:
    global _WORKER
    _WORKER = _Worker(spec)


def _run_unit(unit: WorkUnit) -> list[Row]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(unit)


def _execute(
    units: Sequence[WorkUnit], spec: _Spec, workers: int, sink: Callable[[list[Row]], None],
    progress: bool,
) -> None:  # fmt: skip
    if not units:  # everything already done (a resumed, finished run): build nothing
        return
    total = sum(len(unit.questions) for unit in units)
    with _progress(total, progress, spec.benchmark) as bar:
        _dispatch(units, spec, workers, sink, bar.update)


def _dispatch(
    units: Sequence[WorkUnit], spec: _Spec, workers: int, sink: Callable[[list[Row]], None],
    bar: Callable[[int], object],
) -> None:  # fmt: skip
    if workers <= 1 or len(units) <= 1:
        worker = _Worker(spec)
        for unit in units:
            rows = worker.run(unit)
            sink(rows)
            bar(len(rows))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(units)), mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker, initargs=(_with_threads(spec, threads),),
    )  # fmt: skip
    try:
        futures = [pool.submit(_run_unit, unit) for unit in units]
        for future in as_completed(futures):
            rows = future.result()
            sink(rows)
            bar(len(rows))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _with_threads(spec: _Spec, threads: int) -> _Spec:
    return _Spec(spec.benchmark, spec.systems, spec.embedder, spec.k_values, threads)


def _progress(total: int, enabled: bool, benchmark: str) -> Any:
    """A tqdm bar on stderr counting the questions answered (it moves one work unit at a time:
    a LoCoMo conversation, a LongMemEval question); a disabled one when not ``enabled``."""
    from tqdm import tqdm

    return tqdm(total=total, desc=benchmark, unit="q", file=sys.stderr, disable=not enabled)


def _select(
    units: Sequence[WorkUnit], limit: int | None, done: set[str]
) -> tuple[set[str], list[WorkUnit]]:
    """The ids of the first ``limit`` questions, and the units with those still to run."""
    selected: set[str] = set()
    pending: list[WorkUnit] = []
    for unit in units:
        if limit is not None and len(selected) >= limit:
            break
        room = None if limit is None else limit - len(selected)
        chosen = unit.questions[:room]
        selected.update(q.id for q in chosen)
        todo = tuple(q for q in chosen if q.id not in done)
        if todo:
            pending.append(WorkUnit(unit.sessions, todo))
    return selected, pending


def _check_args(limit: int | None, workers: int, k_values: Sequence[int]) -> tuple[int, ...]:
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise InvalidInputError("limit must be a positive number of questions")
    if workers < 1:
        raise InvalidInputError("workers must be >= 1")
    ks = tuple(sorted(set(k_values)))
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise InvalidInputError("k_values must be positive integers")
    return ks


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _systems(
    preset: str | Sequence[str], baselines: Sequence[str], modes: Sequence[str] = ("named",)
) -> tuple[str, ...]:
    presets = [preset] if isinstance(preset, str) else list(preset)
    wrong = [p for p in presets if p.removeprefix("engram:") not in PRESETS]
    if wrong or not presets:
        raise InvalidInputError(f"unknown presets {wrong}; known: {sorted(PRESETS)}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise InvalidInputError(f"unknown input modes {bad}; known: {list(MODES)}")
    names = system_names(presets, list(dict.fromkeys(modes)))
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise InvalidInputError(f"unknown baselines {unknown}; known: {list(BASELINES)}")
    return (*names, *baselines)


def _preset_settings(systems: Sequence[str]) -> dict[str, Any]:
    """Every setting of each Engram preset that runs, as JSON values: a run directory whose
    presets were tuned since is not resumed with the new ones."""
    return {
        name: json.loads(
            json.dumps(
                dataclasses.asdict(PRESETS[name.removeprefix("engram:").removesuffix(PLAIN)])
            )
        )
        for name in systems
        if name.startswith("engram:")
    }


def _run(
    spec: _Spec, units: Sequence[WorkUnit], data_path: str | Path, out_dir: str | Path,
    *, limit: int | None, workers: int, progress: bool, data: Mapping[str, Any],
    group_names: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    config = {
        "benchmark": spec.benchmark,
        **(extra or {}),
        "data": str(Path(data_path).resolve()),
        "data_sha256": _sha256(Path(data_path)),
        "systems": list(spec.systems),
        "presets": _preset_settings(spec.systems),
        "embedder": embedder_name(spec.embedder),
        "k_values": list(spec.k_values),
        "engram_version": engram.__version__,
        "python": platform.python_version(),
        "limit": limit,
        "workers": workers,
        "started_at": datetime.now(UTC).isoformat(),
    }
    out = prepare_run_dir(out_dir, config)
    selected, pending = _select(units, limit, completed_ids(out))
    _execute(pending, spec, workers, lambda rows: append_rows(out, rows), progress)
    rows = [row for row in read_rows(out) if row["id"] in selected]
    levels = ("session", "turn") if spec.benchmark == "longmemeval" else ("turn",)
    summary = summarise(
        spec.benchmark, rows, systems=spec.systems, k_values=spec.k_values, levels=levels,
        data=data, config=config, group_names=group_names,
    )  # fmt: skip
    summary["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    summary["plots"], summary["notes"] = write_plots(out, summary)
    write_summary(out, summary, render_markdown(summary))
    return summary


def run_locomo(
    data_path: str | Path,
    out_dir: str | Path,
    *,
    preset: str | Sequence[str] = "hybrid",
    embedder: EmbedderSpec = None,
    limit: int | None = None,
    workers: int = 1,
    k_values: Sequence[int] = LOCOMO_K,
    baselines: Sequence[str] = BASELINES,
    progress: bool = False,
    modes: Sequence[str] = MODES,
) -> dict[str, Any]:
    """Evidence recall@k on a LoCoMo file, for Engram (one or more presets, in each input mode
    of ``modes``) and the baselines. Returns the summary written to ``out_dir/summary.json``."""
    ks = _check_args(limit, workers, k_values)
    dataset = locomo.load_locomo(data_path)
    spec = _Spec("locomo", _systems(preset, baselines, modes), embedder, ks)
    names = {str(c): n for c, n in locomo.CATEGORY_NAMES.items()}
    return _run(
        spec, locomo.to_work_units(dataset.samples), data_path, out_dir, limit=limit,
        workers=workers, progress=progress, data=dataset.stats(), group_names=names,
    )  # fmt: skip


def run_longmemeval(
    data_path: str | Path,
    out_dir: str | Path,
    *,
    preset: str | Sequence[str] = "hybrid",
    embedder: EmbedderSpec = None,
    limit: int | None = None,
    workers: int = 1,
    k_values: Sequence[int] = LONGMEMEVAL_K,
    baselines: Sequence[str] = BASELINES,
    progress: bool = False,
    pool: bool = False,
    modes: Sequence[str] = ("named",),
) -> dict[str, Any]:
    """LongMemEval's recall_any / recall_all / ndcg_any @k at session and turn level, over the
    non-abstention questions, for Engram and the baselines. Returns the written summary.
    ``pool``: all sessions of the file in one store, each question searched against all."""
    ks = _check_args(limit, workers, k_values)
    dataset = longmemeval.load_longmemeval(data_path)
    spec = _Spec("longmemeval", _systems(preset, baselines, modes), embedder, ks)
    items = dataset.items
    units = [longmemeval.to_pooled_unit(items)] if pool else longmemeval.to_work_units(items)
    data = {**dataset.stats(), "pooled_sessions": len(units[0].sessions)} if pool else None
    return _run(
        spec, units, data_path, out_dir, limit=limit, workers=workers, progress=progress,
        data=data or dataset.stats(), extra={"pool": pool},
    )  # fmt: skip
