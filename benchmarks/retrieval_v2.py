"""Retrieval v2 ablation: LoCoMo (named and plain input modes) and LongMemEval pooled, every
configuration against the same stores, through the public Memory API and the harness's loaders,
systems and metrics.

    python benchmarks/retrieval_v2.py --locomo ../shared/data/locomo/locomo_dev5.json \\
        --longmemeval ../shared/data/longmemeval/longmemeval_oracle_dev50.json \\
        --embed-cache runs/cache.db

Each row is one configuration (a SearchConfig, and for rows that change ingest a build); the
columns are LoCoMo recall@10 overall and per category in both modes, and LongMemEval pooled
session recall_all@5 overall and per type, turn recall_any@10. Questions are embedded through
the cache as well (only the rankings matter here, not latencies).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from engram import HYBRID, Memory, SearchConfig
from engram.bench.corpus import WorkUnit, clean_sessions, dedupe
from engram.bench.locomo import load_locomo, to_work_units
from engram.bench.longmemeval import load_longmemeval, to_pooled_unit
from engram.bench.metrics import evaluate_retrieval, evidence_recall
from engram.bench.systems import USER_ID, EngramSystem, MemoEmbedder, make_embedder
from engram.embed import DiskCachedEmbedder, Embedder
from engram.write.ingest import speakers_in_text as _PARSE

Build = dict[str, Any]  # keyword arguments of Memory.open
# (label, build, config); a build of None is the default one.
RAW = {"_no_prefix_parse": True}  # ingest as before "Name: " prefixes were parsed
FALLBACK = HYBRID.with_(time_fallback=True)
ROWS: list[tuple[str, Build | None, SearchConfig]] = [
    ("HYBRID, no prefix parsing (before)", RAW, HYBRID),
    ("+ 'Name: ' prefixes parsed at ingest", None, HYBRID),
    ("+ time fallback", None, FALLBACK),
    ("+ role 0.5", None, FALLBACK.with_(role_weight=0.5)),
    ("+ role 1.0", None, FALLBACK.with_(role_weight=1.0)),
    ("+ role 1.0, sessions sum top 2", None,
     FALLBACK.with_(role_weight=1.0, session_aggregation="sum", session_top=2)),
    ("+ role 1.0, sessions sum top 3", None,
     FALLBACK.with_(role_weight=1.0, session_aggregation="sum", session_top=3)),
    ("+ role 1.0; long assistant turns (> 150 words): no sentence keys",
     {"_sentences": (150, 0)}, FALLBACK.with_(role_weight=1.0)),
    ("+ role 1.0; long assistant turns: first 4 sentence keys",
     {"_sentences": (150, 4)}, FALLBACK.with_(role_weight=1.0)),
]  # fmt: skip
LME_TYPES = ("multi-session", "temporal-reasoning", "single-session-preference",
             "knowledge-update", "single-session-user", "single-session-assistant")  # fmt: skip


def _build(
    units: Sequence[WorkUnit], embedder: Embedder, plain: bool, build: Build | None
) -> list[Memory]:
    memories = []
    system = EngramSystem("hybrid", embedder, plain=plain)
    options = dict(build or {})
    import engram.write.ingest as ingest

    if options.pop("_no_prefix_parse", False):
        ingest.speakers_in_text = lambda messages: [None] * len(messages)  # type: ignore[assignment]
    else:
        ingest.speakers_in_text = _PARSE
    words, keys = options.pop("_sentences", (10**9, ingest.MAX_SENTENCE_KEYS))
    ingest.SENTENCES = ingest.SentencePolicy(words, keys)
    for unit in units:
        memory = Memory.open(":memory:", embedder=embedder, **options)
        for session in clean_sessions(unit.sessions):
            messages = [system._message(turn) for turn in session.turns]
            if messages:
                memory.add(messages, user_id=USER_ID, session_id=session.id,
                           session_date=session.date)  # fmt: skip
        memories.append(memory)
    return memories


def _locomo(
    units: Sequence[WorkUnit], memories: Sequence[Memory], config: SearchConfig, plain: bool
) -> dict[str, float]:
    scores: dict[str, list[float]] = defaultdict(list)
    for unit, memory in zip(units, memories, strict=True):
        for q in unit.questions:
            hits = memory.search(q.text, user_id=USER_ID, limit=20, config=config,
                                 question_date=None if plain else q.date)  # fmt: skip
            ranked = dedupe(m for h in hits for m in h.record.message_ids)
            for k in (5, 10):
                value = evidence_recall(ranked, q.turn_evidence, k)
                scores[f"all@{k}"].append(value)
                if k == 10:
                    scores[f"c{q.group}@10"].append(value)
    return {name: statistics.fmean(v) for name, v in scores.items()}


def _longmemeval(unit: WorkUnit, memory: Memory, config: SearchConfig) -> dict[str, float]:
    scores: dict[str, list[float]] = defaultdict(list)
    for q in unit.questions:
        found = memory.search_sessions(q.text, user_id=USER_ID, limit=50, config=config,
                                       question_date=q.date)  # fmt: skip
        sessions = [s.session_id for s in found]
        hits = memory.search(q.text, user_id=USER_ID, limit=50, config=config,
                             question_date=q.date)  # fmt: skip
        turns = dedupe(m for h in hits for m in h.record.message_ids)
        all5 = evaluate_retrieval(sessions, q.session_evidence, 5).recall_all
        scores["s_all@5"].append(all5)
        scores[f"{q.group}"].append(all5)
        scores["s_all@10"].append(evaluate_retrieval(sessions, q.session_evidence, 10).recall_all)
        if q.turn_evidence:
            scores["t_any@10"].append(evaluate_retrieval(turns, q.turn_evidence, 10).recall_any)
    return {name: statistics.fmean(v) for name, v in scores.items()}


def _fmt(values: dict[str, float], keys: Sequence[str]) -> str:
    return " | ".join(f"{values.get(k, float('nan')):.3f}" for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locomo", required=True)
    parser.add_argument("--longmemeval", required=True)
    parser.add_argument("--embed-cache", default=None)
    parser.add_argument("--only", default=None, help="run only the rows whose label has this")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    model = make_embedder(None)
    inner: Embedder = DiskCachedEmbedder(model, args.embed_cache) if args.embed_cache else model
    embedder = MemoEmbedder(inner, keep=10**6)
    locomo_units = to_work_units(load_locomo(args.locomo).samples)
    lme_unit = to_pooled_unit(load_longmemeval(args.longmemeval).items)
    rows = [r for r in ROWS if args.only is None or args.only in r[0]]
    builds: dict[str, tuple[list[Memory], list[Memory], Memory]] = {}
    lo_keys = ["all@10", "c1@10", "c2@10", "c3@10", "c4@10"]
    print(
        "| configuration | LoCoMo named: " + " | ".join(lo_keys) + " | plain: all@10 | "
        "c1 | c2 | c3 | c4 | LME pooled s_all@5 | " + " | ".join(LME_TYPES) + " | t_any@10 |"
    )
    out: dict[str, Any] = {}
    for label, build, config in rows:
        key = json.dumps(build, sort_keys=True)
        if key not in builds:
            start = time.perf_counter()
            builds[key] = (
                _build(locomo_units, embedder, False, build),
                _build(locomo_units, embedder, True, build),
                _build([lme_unit], embedder, False, build)[0],
            )
            print(f"<!-- build {key}: {time.perf_counter() - start:.1f} s -->", flush=True)
        named, plain, pooled = builds[key]
        a = _locomo(locomo_units, named, config, False)
        b = _locomo(locomo_units, plain, config, True)
        c = _longmemeval(lme_unit, pooled, config)
        out[label] = {"named": a, "plain": b, "pooled": c}
        print(f"| {label} | {_fmt(a, lo_keys)} | {_fmt(b, lo_keys)} | {_fmt(c, ['s_all@5'])} | "
              f"{_fmt(c, LME_TYPES)} | {_fmt(c, ['t_any@10'])} |", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=1)


Run = Callable[[], None]

if __name__ == "__main__":
    main()
