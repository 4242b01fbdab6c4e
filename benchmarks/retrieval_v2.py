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

from engram import HYBRID, LEXICAL, SEMANTIC, Memory, SearchConfig
from engram.bench.corpus import WorkUnit, clean_sessions, dedupe
from engram.bench.locomo import load_locomo, to_work_units
from engram.bench.longmemeval import load_longmemeval, to_pooled_unit
from engram.bench.metrics import evaluate_retrieval, evidence_recall
from engram.bench.systems import USER_ID, EngramSystem, MemoEmbedder, make_embedder
from engram.checks import MAX_LIMIT
from engram.embed import DiskCachedEmbedder, Embedder
from engram.read.retrieve import aggregate_sessions
from engram.write.ingest import SENTENCES as _DEFAULT
from engram.write.ingest import speakers_in_text as _PARSE

Build = dict[str, Any]  # keyword arguments of Memory.open
# (label, build, config); a build of None is the default one.
# Ingest as before this change: "Name: " prefixes not parsed, every sentence of a turn a key.
RAW = {"_no_prefix_parse": True, "_sentences": (10**9, 16)}
EVERY = {"_sentences": (10**9, 16)}  # prefixes parsed, every sentence a key
# HYBRID as it was before: no time fallback, no role factor.
BEFORE = HYBRID.with_(name="hybrid", time_fallback=False, role_weight=0.0)
FALLBACK = BEFORE.with_(time_fallback=True)
NO_LONG = {"_sentences": (150, 0)}  # long assistant turns: no sentence keys
FIRST4 = {"_sentences": (150, 4)}  # long assistant turns: their first 4 sentence keys
ROLE = FALLBACK.with_(role_weight=0.5)
ROWS: list[tuple[str, Build | None, SearchConfig]] = [
    ("HYBRID, no prefix parsing (before)", RAW, BEFORE),
    ("+ 'Name: ' prefixes parsed at ingest", EVERY, BEFORE),
    ("+ time fallback", EVERY, FALLBACK),
    ("+ role 0.25", EVERY, FALLBACK.with_(role_weight=0.25)),
    ("+ role 0.5", EVERY, ROLE),
    ("+ role 0.75", EVERY, FALLBACK.with_(role_weight=0.75)),
    ("+ role 1.0", EVERY, FALLBACK.with_(role_weight=1.0)),
    ("+ role 0.5, sessions sum top 2", EVERY,
     ROLE.with_(session_aggregation="sum", session_top=2)),
    ("+ role 0.5; long assistant turns: no sentence keys", NO_LONG, ROLE),
    ("+ role 0.5; long assistant turns: first 4 sentence keys (new HYBRID)", FIRST4, ROLE),
    ("new HYBRID preset, default build", None, HYBRID),
    ("SEMANTIC before", EVERY, SEMANTIC.with_(time_fallback=False, role_weight=0.0)),
    ("SEMANTIC + time fallback", EVERY, SEMANTIC.with_(role_weight=0.0)),
    ("SEMANTIC + time fallback + role 0.5", EVERY, SEMANTIC.with_(role_weight=0.5)),
    ("SEMANTIC + time fallback; first 4 sentence keys", FIRST4, SEMANTIC.with_(role_weight=0.0)),
    ("LEXICAL before", EVERY, LEXICAL.with_(time_fallback=False, role_weight=0.0)),
    ("LEXICAL + time fallback + role 0.5", EVERY, LEXICAL.with_(role_weight=0.5)),
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
        ingest.speakers_in_text = lambda messages: [None] * len(messages)
    else:
        ingest.speakers_in_text = _PARSE
    words, keys = options.pop("_sentences", (_DEFAULT.long_words, _DEFAULT.long_keys))
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
        hits = memory.search(q.text, user_id=USER_ID, limit=MAX_LIMIT, config=config,
                             question_date=q.date)  # fmt: skip
        found = aggregate_sessions(hits, method=config.session_aggregation, top=config.session_top)
        sessions = [s.session_id for s in found]  # what search_sessions returns
        turns = dedupe(m for h in hits[:50] for m in h.record.message_ids)
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
    parser.add_argument("--locomo", default=None)
    parser.add_argument("--longmemeval", default=None)
    parser.add_argument("--embed-cache", default=None, help="LongMemEval's vectors")
    parser.add_argument("--locomo-cache", default=None, help="LoCoMo's (default: --embed-cache)")
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help="run only the rows whose label has this (=LABEL: is it); repeatable",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    model = make_embedder(None)

    def cached(path: str | None) -> Embedder:
        return MemoEmbedder(DiskCachedEmbedder(model, path) if path else model, keep=10**6)

    lme_embedder = cached(args.embed_cache)
    embedder = cached(args.locomo_cache or args.embed_cache)
    locomo_units = to_work_units(load_locomo(args.locomo).samples) if args.locomo else []
    lme_unit = to_pooled_unit(load_longmemeval(args.longmemeval).items if args.longmemeval else [])

    def wanted(label: str) -> bool:
        return args.only is None or any(
            label == o[1:] if o.startswith("=") else o in label for o in args.only
        )

    rows = [r for r in ROWS if wanted(r[0])]
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
                _build([lme_unit], lme_embedder, False, build)[0],
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
