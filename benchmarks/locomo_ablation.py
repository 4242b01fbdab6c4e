"""LoCoMo evidence-recall ablation: each retrieval feature switched on in turn, through the public
Memory API and the harness's loader and metric.

    python benchmarks/locomo_ablation.py --data ../shared/data/locomo/locomo_dev5.json

Embeddings are cached per text within the run, so the builds (turns and rounds; windows with
their text embedded; windows with mean vectors; sentence keys) embed each text once.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from typing import Literal

from engram import HYBRID, LEXICAL, SEMANTIC, Memory, RecordKind, SearchConfig, SqliteStore
from engram.bench.corpus import WorkUnit
from engram.bench.locomo import load_locomo, to_work_units
from engram.bench.metrics import evidence_recall
from engram.bench.systems import MemoEmbedder
from engram.embed import Embedder, SentenceTransformerEmbedder

KS = (1, 5, 10, 20)
TURN_ROUND = (RecordKind.TURN, RecordKind.ROUND)
PLAIN = SearchConfig()  # RRF, no speaker/time factors, all key kinds


# A build: (window size, sentence keys, span vectors). Turns and rounds only; the previous
# default (windows with their text embedded); mean span vectors; the current default.
Build = tuple[int, bool, Literal["mean", "embed"]]
ROUNDS: Build = (0, False, "embed")
WINDOWS: Build = (3, False, "embed")
MEAN: Build = (3, False, "mean")
DEFAULT: Build = (3, True, "mean")
TUNED = (("lexical", 2.0), ("semantic", 1.0), ("sentence", 0.5))  # before names were masked
OLD_HYBRID = HYBRID.with_(
    sentence=False, candidates=100, question_penalty=0.0, mask_speakers=False,
    weights=(("lexical", 2.0), ("semantic", 1.0)),
)  # fmt: skip

STEPS: list[tuple[str, Build, SearchConfig]] = [
    ("turn keys only, lexical", ROUNDS, PLAIN.with_(semantic=False, key_kinds=(RecordKind.TURN,))),
    ("turn keys only, semantic", ROUNDS, PLAIN.with_(lexical=False, key_kinds=(RecordKind.TURN,))),
    ("turn keys only, hybrid RRF", ROUNDS, PLAIN.with_(key_kinds=(RecordKind.TURN,))),
    ("+ round keys (hybrid RRF)", ROUNDS, PLAIN.with_(key_kinds=TURN_ROUND)),
    ("+ window keys (3 turns, text embedded)", WINDOWS, PLAIN),
    ("+ weighted fusion, lexical 2 : semantic 1", WINDOWS,
     PLAIN.with_(fusion="weighted", weights=(("lexical", 2.0), ("semantic", 1.0)))),
    ("+ speaker factor 1.0", WINDOWS, PLAIN.with_(fusion="weighted", speaker_weight=1.0,
                                                  weights=(("lexical", 2.0), ("semantic", 1.0)))),
    ("+ time factor 1.0", WINDOWS, OLD_HYBRID.with_(key_decay=0.0)),
    ("+ key decay 0.3 (the previous HYBRID)", WINDOWS, OLD_HYBRID),
    ("window/round vectors = mean of turn vectors", MEAN, OLD_HYBRID),
    ("+ 300 candidates per retriever", MEAN, OLD_HYBRID.with_(candidates=300)),
    ("+ question penalty 0.2", MEAN, OLD_HYBRID.with_(candidates=300, question_penalty=0.2)),
    ("+ sentence keys and retriever (0.5)", DEFAULT,
     HYBRID.with_(mask_speakers=False, weights=TUNED)),
    ("+ speaker names masked in the embedded query", DEFAULT, HYBRID.with_(weights=TUNED)),
    ("+ equal weights 1 : 1 : 1 = HYBRID preset", DEFAULT, HYBRID),
    ("LEXICAL preset", DEFAULT, LEXICAL),
    ("SEMANTIC preset", DEFAULT, SEMANTIC),
    ("HYBRID, RRF instead of weighted", DEFAULT, HYBRID.with_(fusion="rrf")),
    ("HYBRID, lexical 2 : semantic 1 : sentence 1", DEFAULT,
     HYBRID.with_(weights=(("lexical", 2.0), ("semantic", 1.0), ("sentence", 1.0)))),
    ("HYBRID, lexical 1.5 : semantic 1 : sentence 1", DEFAULT,
     HYBRID.with_(weights=(("lexical", 1.5), ("semantic", 1.0), ("sentence", 1.0)))),
    ("HYBRID, names not masked", DEFAULT, HYBRID.with_(mask_speakers=False)),
    ("HYBRID, 100 candidates", DEFAULT, HYBRID.with_(candidates=100)),
    ("HYBRID, text-embedded windows", (3, True, "embed"), HYBRID),
]  # fmt: skip


def build(units: list[WorkUnit], embedder: Embedder, spec: Build) -> list[Memory]:
    window, sentences, spans = spec
    mems = []
    for unit in units:
        mem = Memory(store=SqliteStore(":memory:"), embedder=embedder, window_size=window,
                     sentence_keys=sentences, span_vectors=spans)  # fmt: skip
        for s in unit.sessions:
            messages = [{"role": t.role, "content": t.text, "id": t.id, "name": t.name}
                        for t in s.turns if t.text.strip()]  # fmt: skip
            mem.add(messages, user_id="u", session_id=s.id, session_date=s.date)
        mems.append(mem)
    return mems


def evaluate(units: list[WorkUnit], mems: list[Memory], cfg: SearchConfig) -> dict[str, float]:
    scores: dict[str, list[float]] = defaultdict(list)
    for unit, mem in zip(units, mems, strict=True):
        for q in unit.questions:
            hits = mem.search(q.text, user_id="u", limit=max(KS), config=cfg,
                              question_date=q.date)  # fmt: skip
            ranked = list(dict.fromkeys(m for h in hits for m in h.record.message_ids))
            for k in KS:
                r = evidence_recall(ranked, q.turn_evidence, k)
                scores[f"all@{k}"].append(r)
                scores[f"c{q.group}@{k}"].append(r)
    return {key: statistics.fmean(v) for key, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    units = to_work_units(load_locomo(args.data).samples)
    embedder = MemoEmbedder(SentenceTransformerEmbedder())  # each text embedded once per run
    built = {spec: build(units, embedder, spec) for spec in dict.fromkeys(b for _, b, _ in STEPS)}
    cols = ["all@5", "all@10", "c1@10", "c2@10", "c3@10", "c4@10", "all@20"]
    print("| configuration | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, spec, cfg in STEPS:
        r = evaluate(units, built[spec], cfg)
        print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
