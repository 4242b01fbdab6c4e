"""Search and ingest speed of the embedded default, split into stages (issues 9 and 12).

A single-user store of ``--turns`` LoCoMo development turns (cycled, each pass moved on by two
years: real vocabulary) is built once per embedder, through the public API, with vectors from a
disk cache beside it (``<db>.vectors``), then searched with the LoCoMo questions, HYBRID preset,
``limit`` 10, the query embedded by the model each time (a fresh query-vector cache):

- wall time of each search (p50 / p95) and the CPU time of the process during it (every thread);
- the stages: query embedding, speaker names, lexical search, the vector searches, candidate
  references, whole records of the hits; "fusion and factors" is the rest.

Ingest: ``--ingest-turns`` new turns into a fresh store with no vector cache, LoCoMo turns
(sessions of the dev file) and LongMemEval-shaped long turns (10-turn sessions, ~75-word user
and ~285-word assistant turns made of the file's sentences), turns/s and the embedding share.

``--variant NAME=SRC`` (repeatable) runs every measurement in a subprocess with ``SRC`` first on
``PYTHONPATH`` (e.g. the code before a change, from ``git archive``), alternating the variants
round by round, so before and after are measured in one run on the same stores (a variant
named ``*-cold`` empties the store's ref memo before each search):

    git archive HEAD~1 src | tar -x -C /tmp/before
    python benchmarks/search_speed.py --variant before=/tmp/before/src --variant after=src \\
        --dir /tmp/search-speed --out benchmarks/results/search-speed.json
    python benchmarks/search_speed.py --dir /tmp/search-speed --profile /tmp/profile.txt
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

LOCOMO = Path(__file__).resolve().parents[2] / "shared/data/locomo/locomo_dev5.json"
USER = "u"
STAGES = ("embed", "speakers", "lexical", "semantic", "sentence", "refs", "records")


def locomo_sessions(path: Path) -> Iterator[tuple[str, Any, list[dict[str, str]]]]:
    """(session id, date, messages) forever: the file's sessions, each pass two years later."""
    from engram.bench.locomo import load_locomo

    samples = load_locomo(path).samples
    n = 0
    while True:
        for sample in samples:
            conv = sample.conversation
            for session in conv.sessions:
                messages = [
                    {"role": "user" if t.speaker == conv.speaker_a else "assistant",
                     "content": t.text, "name": t.speaker}
                    for t in session.turns
                ]  # fmt: skip
                date = session.date + timedelta(days=730 * n) if session.date else None
                yield f"p{n}-{sample.sample_id}-{session.session_id}", date, messages
        n += 1


def long_sessions(path: Path, seed: int = 0) -> Iterator[tuple[str, Any, list[dict[str, str]]]]:
    """LongMemEval-shaped sessions: 10 turns, ~75-word user and ~285-word assistant turns."""
    from engram.bench.locomo import load_locomo

    pool = [t.text for s in load_locomo(path).samples for x in s.conversation.sessions
            for t in x.turns]  # fmt: skip
    rng = random.Random(seed)

    def turn(words: int) -> str:
        picked: list[str] = []
        while sum(len(s.split()) for s in picked) < words:
            picked.append(rng.choice(pool))
        return " ".join(picked)

    for n in range(10**9):
        messages = [
            {"role": "user" if i % 2 == 0 else "assistant",
             "content": turn(75 if i % 2 == 0 else 285)}
            for i in range(10)
        ]  # fmt: skip
        yield f"long-{n}", None, messages


def questions(path: Path, n: int) -> list[str]:
    from engram.bench.locomo import load_locomo

    seen = dict.fromkeys(q.question for s in load_locomo(path).samples for q in s.qa)
    return list(seen)[:n]


class TimedEmbedder:
    """An embedder that adds up its time and texts."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds, self.texts = inner, 0.0, 0

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def embed_batch(self, texts: Sequence[str]) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.embed_batch(texts)
        finally:
            self.seconds += time.perf_counter() - start
            self.texts += len(texts)


class TimedStore:
    """A store whose read methods add their wall time to ``stage``; the vector searches count
    as ``semantic`` then ``sentence``, the candidate refs of a search as ``refs``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.stage: dict[str, float] = defaultdict(float)
        self._vector_calls = 0

    def reset(self) -> None:
        self.stage.clear()
        self._vector_calls = 0

    def _timed(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.stage[name] += time.perf_counter() - start

    def lexical_search(self, *args: Any) -> Any:
        return self._timed("lexical", self._inner.lexical_search, *args)

    def vector_search(self, *args: Any) -> Any:
        self._vector_calls += 1
        name = "semantic" if self._vector_calls == 1 else "sentence"
        return self._timed(name, self._inner.vector_search, *args)

    def speakers(self, *args: Any) -> Any:
        return self._timed("speakers", self._inner.speakers, *args)

    def get_refs(self, *args: Any) -> Any:
        return self._timed("refs", self._inner.get_refs, *args)

    def get_many(self, *args: Any) -> Any:
        return self._timed("records", self._inner.get_many, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def build(db: Path, spec: str, turns: int) -> dict[str, Any]:
    from engram import DiskCachedEmbedder, Memory
    from engram.config import make_embedder

    if db.exists():
        return {"built": False}
    db.parent.mkdir(parents=True, exist_ok=True)
    embedder = DiskCachedEmbedder(make_embedder(spec), f"{db}.vectors")
    started, stored = time.perf_counter(), 0
    with Memory.open(db, embedder=embedder) as mem:
        for session_id, date, messages in locomo_sessions(LOCOMO):
            chunk = messages[: turns - stored]
            mem.add(chunk, user_id=USER, session_id=session_id, session_date=date)
            stored += len(chunk)
            if stored >= turns:
                break
        keys = mem.stats(user_id=USER)
    return {"built": True, "build_s": round(time.perf_counter() - started, 1), "stats": str(keys)}


def search_run(
    db: Path, spec: str, queries: list[str], profile: Path | None, cold: bool = False
) -> dict[str, Any]:
    """One pass over ``queries`` in a fresh Memory (every query embedded), after one warm-up.
    ``cold``: the store's ref memo (refs.py) is emptied before each search."""
    from engram import Memory, SqliteStore
    from engram.config import make_embedder

    store = TimedStore(SqliteStore(db, read_only=True))
    embedder = TimedEmbedder(make_embedder(spec))
    mem = Memory(store=store, embedder=embedder)  # type: ignore[arg-type]
    mem.search("warm up: load the matrix", user_id=USER)
    rows: list[dict[str, float]] = []
    profiler = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    hits = []
    for query in queries:
        if cold:
            store._inner._refs.clear()
        store.reset()
        embedder.seconds = 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        found = mem.search(query, user_id=USER, limit=10)
        row = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
        row.update(store.stage)
        row["embed"] = embedder.seconds
        rows.append(row)
        hits.append([[h.record.id, round(h.score, 9)] for h in found])
    if profiler is not None and profile is not None:
        profiler.stop()
        profile.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    mem.close()
    return {"rows": rows, "hits": hits}


def ingest_run(shape: str, spec: str, turns: int) -> dict[str, Any]:
    from engram import Memory, SqliteStore
    from engram.config import make_embedder

    sessions = locomo_sessions(LOCOMO) if shape == "locomo" else long_sessions(LOCOMO)
    embedder = TimedEmbedder(make_embedder(spec))
    embedder.embed_batch(["warm up the model"])
    embedder.seconds, embedder.texts = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(store=SqliteStore(Path(tmp) / "ingest.db"), embedder=embedder)
        stored, wall, cpu = 0, time.perf_counter(), time.process_time()
        for session_id, date, messages in sessions:
            chunk = messages[: turns - stored]
            mem.add(chunk, user_id=USER, session_id=session_id, session_date=date)
            stored += len(chunk)
            if stored >= turns:
                break
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        mem.close()
    return {
        "shape": shape, "turns": stored, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "turns_per_s": round(stored / wall, 1), "texts": embedder.texts,
        "texts_per_turn": round(embedder.texts / stored, 2),
        "embed_share": round(embedder.seconds / wall, 3),
    }  # fmt: skip


def summarise(rows: list[dict[str, float]]) -> dict[str, Any]:
    def ms(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return {"p50": round(statistics.median(values) * 1e3, 2), "p95": round(p95 * 1e3, 2)}

    out: dict[str, Any] = {"n": len(rows), "wall": ms([r["wall"] for r in rows])}
    out["cpu"] = ms([r["cpu"] for r in rows])
    stages = {s: ms([r.get(s, 0.0) for r in rows])["p50"] for s in STAGES}
    rest = [r["wall"] - sum(r.get(s, 0.0) for s in STAGES) for r in rows]
    stages["fusion_and_factors"] = ms(rest)["p50"]
    out["stage_p50_ms"] = stages
    return out


def compare(first: list[list[Any]], other: list[list[Any]]) -> dict[str, Any]:
    """Whether two passes returned the same hits in the same order, and how far scores moved."""
    ids = [[h[0] for h in hits] for hits in first] == [[h[0] for h in hits] for hits in other]
    diff = max(
        (
            abs(a[1] - b[1])
            for x, y in zip(first, other, strict=True)
            for a, b in zip(x, y, strict=False)
        ),
        default=0.0,
    )
    return {"same_ids_in_order": ids, "identical": first == other, "max_score_diff": diff}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """The measurements of one process (one variant, one round)."""
    spec, db = args.embedder, Path(args.dir) / f"{args.embedder.replace(':', '-')}-{args.turns}.db"
    if args.job == "build":
        return build(db, spec, args.turns)
    if args.job == "search":
        profile = Path(args.profile) if args.profile else None
        return search_run(db, spec, questions(LOCOMO, args.queries), profile, args.cold)
    return ingest_run(args.job.split(":")[1], spec, args.ingest_turns)


def spawn(src: str | None, argv: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, *argv], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def drive(args: argparse.Namespace) -> dict[str, Any]:
    variants = [v.split("=", 1) for v in args.variant] or [["current", ""]]
    base = ["--dir", args.dir, "--turns", str(args.turns), "--queries", str(args.queries),
            "--ingest-turns", str(args.ingest_turns)]  # fmt: skip
    report: dict[str, Any] = {"args": vars(args), "load_before": os.getloadavg()}
    for spec in args.embedders:
        job = [*base, "--job", "build", "--embedder", spec]
        report[f"build:{spec}"] = spawn(variants[0][1], job)
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for _ in range(args.rounds):
            for name, src in variants:
                cold = ["--cold"] if name.endswith("-cold") else []
                job = [*base, "--job", "search", "--embedder", spec, *cold]
                runs[name].append(spawn(src, job))
        for name, results in runs.items():
            rows = [row for r in results for row in r["rows"]]
            report[f"search:{spec}:{name}"] = summarise(rows)
        names = list(runs)
        if len(names) > 1:  # the same rankings in every variant?
            report[f"same_hits:{spec}"] = {
                n: compare(runs[names[0]][0]["hits"], runs[n][0]["hits"]) for n in names[1:]
            }
        done = {k: v for k, v in report.items() if k.startswith(("search", "same"))}
        print(json.dumps(done), file=sys.stderr)
    for shape in args.ingest:
        turns = str(args.ingest_turns if shape == "locomo" else args.long_turns)
        for _ in range(args.ingest_rounds):
            for name, src in variants:
                if name.endswith("-cold"):
                    continue
                for spec in args.ingest_embedders if name == variants[-1][0] else ["bundled"]:
                    key = f"ingest:{shape}:{spec}:{name}"
                    job = ["--job", f"ingest:{shape}", "--embedder", spec]
                    report.setdefault(key, []).append(
                        spawn(src, [*base, *job, "--ingest-turns", turns])
                    )
    report["load_after"] = os.getloadavg()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/search-speed")
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--embedders", nargs="*", default=["bundled", "hash:384"])
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=SRC")
    parser.add_argument("--ingest", nargs="*", default=["locomo", "long"])
    parser.add_argument("--ingest-turns", type=int, default=400)
    parser.add_argument("--ingest-rounds", type=int, default=1)
    parser.add_argument("--long-turns", type=int, default=100)
    parser.add_argument(
        "--ingest-embedders", nargs="+", default=["bundled", "onnx"],
        help="for the last variant (the others: bundled)",
    )  # fmt: skip
    parser.add_argument("--profile", help="one profiled search pass (pyinstrument) to this file")
    parser.add_argument("--out")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--embedder", default="bundled", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(worker(args)))
        return
    if args.profile:
        base = ["--dir", args.dir, "--turns", str(args.turns), "--queries", str(args.queries)]
        for spec in args.embedders:
            spawn(None, [*base, "--job", "build", "--embedder", spec])
            path = f"{args.profile}.{spec.replace(':', '-')}"
            spawn(None, [*base, "--job", "search", "--embedder", spec, "--profile", path])
        return
    report = drive(args)
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
