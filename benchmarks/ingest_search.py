"""Ingest throughput, search latency, file size and memory of the embedded default.

Everything goes through the public ``Memory`` API with the real bundled embedder
(all-MiniLM-L6-v2 via sentence-transformers on the CPU) and a real SQLite file in a temporary
directory. The corpus is a seeded synthetic chat: sessions of ~20 templated turns about a
vocabulary of people, places, topics and dates, so that FTS5 and the vectors see realistic text.

The corpus is ingested once and measured at each size on the way up (10k, then on to 100k)::

    python benchmarks/ingest_search.py --sizes 10000 100000 --queries 200 --out results.json

All turns belong to one user: search scans one user's vectors, so this is the worst case for a
single ``search`` call at a given store size.

Embedding 100k turns plus their round keys with torch on two cores takes a long while, so
``--fill-embedder onnx`` fills the store up to each size (less ``--probe-turns``) with the same
weights run by onnxruntime (see ``embedders.py``: the vectors agree with sentence-transformers to
~1e-7 in cosine), under the same embedder name. The last ``--probe-turns`` turns before each
measurement are always ingested with the default torch embedder, so the reported ingest
throughput at each size is the default's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from engram import Memory
from engram.embed import Embedder, SentenceTransformerEmbedder, Vectors

USER = "bench-user"
PRESETS = ("lexical", "semantic", "hybrid")

# -- the synthetic conversation generator ------------------------------------------------------

NAMES = (
    "Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kavya", "Liam", "Maya", "Nikolai", "Olivia", "Pedro", "Quinn", "Rosa", "Sven", "Tariq",
    "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe", "Amara", "Bastian", "Celine", "Diego",
)  # fmt: skip
PLACES = (
    "Lisbon", "Kyoto", "Nairobi", "Vancouver", "Oaxaca", "Reykjavik", "Edinburgh", "Hanoi",
    "Marrakesh", "Tasmania", "the Dolomites", "Patagonia", "Copenhagen", "Seville", "Tbilisi",
    "Queenstown", "the Lake District", "Valparaiso", "Bergen", "Zanzibar", "Montreal", "Cusco",
    "the farmers market", "the climbing gym", "my aunt's cabin", "the community garden",
    "the public library", "the night market", "the old bookshop", "the jazz club",
)  # fmt: skip
TOPICS = {
    "cooking": ("sourdough", "ramen broth", "a lemon tart", "kimchi", "paella", "dumplings"),
    "running": ("a half marathon", "interval training", "new trail shoes", "a 10k race"),
    "gardening": ("tomato seedlings", "a compost bin", "raised beds", "heirloom beans"),
    "music": ("the cello", "a jazz standard", "a vinyl collection", "a choir concert"),
    "work": ("a product launch", "the quarterly review", "a job interview", "a promotion"),
    "reading": ("a mystery novel", "a biography of Lovelace", "a poetry collection"),
    "health": ("a physiotherapy plan", "sleep tracking", "a dentist appointment", "yoga"),
    "travel": ("a night train", "a hostel booking", "a visa application", "a road trip"),
    "pets": ("a rescue dog", "the cat's vet visit", "an aquarium", "puppy training"),
    "family": ("my sister's wedding", "grandma's birthday", "a family reunion", "the twins"),
    "money": ("a savings plan", "the mortgage", "a budget spreadsheet", "index funds"),
    "learning": ("Japanese lessons", "a pottery class", "a coding bootcamp", "chess openings"),
    "photography": ("a film camera", "a sunrise shoot", "a photo book", "a new lens"),
    "climbing": ("a bouldering project", "a multi-pitch route", "new chalk bags"),
}  # fmt: skip
FEELINGS = ("excited", "nervous", "proud", "exhausted", "curious", "relieved", "frustrated")
WHEN = (
    "last weekend", "yesterday", "two weeks ago", "on Monday", "last summer", "in March",
    "over the holidays", "this morning", "a few days ago", "last month",
)  # fmt: skip
USER_TEMPLATES = (
    "I went to {place} with {name} {when} and we talked about {thing} the whole time.",
    "{name} finally convinced me to try {thing}. I'm {feeling} about it, honestly.",
    "Do you remember what I told you about {thing}? I changed my mind after {when}.",
    "{when} I spent hours on {thing}; {name} thinks I should go to {place} for it.",
    "Quick update on {topic}: {thing} went better than expected {when}.",
    "I'm planning a trip to {place} in {month}. Any ideas for {topic} there?",
    "My friend {name} just started {thing} and keeps asking me for tips.",
    "I feel {feeling} because {name} cancelled our plans for {place} {when}.",
    "Can you help me plan {thing} for {month}? {name} will join me.",
    "I think my favourite part of {topic} is {thing}, especially with {name}.",
)  # fmt: skip
ASSISTANT_TEMPLATES = (
    "That sounds {feeling_adj}! How did {name} feel about {thing}?",
    "Noted: you went to {place} {when}. Do you want a reminder about {thing} next time?",
    "For {thing}, start small and keep notes; {place} is a great place to practise {topic}.",
    "Good to hear about {topic}. Last time you mentioned {thing}; is that still the plan?",
    "I can help with that. For {month}, I'd book {place} early and ask {name} to share costs.",
    "It's normal to feel {feeling} about {thing}. What would make it easier this week?",
    "Here is a simple plan for {thing}: three short sessions a week, then review with {name}.",
    "{name} sounds like a good friend. Did you end up visiting {place}?",
)  # fmt: skip
QUERY_TEMPLATES = (
    "When did I go to {place} with {name}?",
    "What did {name} convince me to try?",
    "What did I say about {thing}?",
    "Which trip did I plan for {month}?",
    "Who keeps asking me for tips about {topic}?",
    "How did I feel about {thing}?",
    "Where should I go for {topic} according to {name}?",
    "What happened with {thing} {when}?",
)  # fmt: skip
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
FEELING_ADJ = ("wonderful", "exhausting", "like a big step", "fun", "intense", "memorable")


def _slots(rng: random.Random) -> dict[str, str]:
    topic = rng.choice(list(TOPICS))
    return {
        "name": rng.choice(NAMES),
        "place": rng.choice(PLACES),
        "topic": topic,
        "thing": rng.choice(TOPICS[topic]),
        "feeling": rng.choice(FEELINGS),
        "feeling_adj": rng.choice(FEELING_ADJ),
        "when": rng.choice(WHEN),
        "month": rng.choice(MONTHS),
    }


def _fill(template: str, slots: dict[str, str]) -> str:
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def generate_sessions(
    seed: int, turns_per_session: int = 20
) -> Iterator[tuple[str, datetime, list[dict[str, str]]]]:
    """An endless, deterministic stream of (session_id, date, messages); turns alternate
    user/assistant and a session keeps a few slot values so its turns hang together."""
    rng = random.Random(seed)
    date = datetime(2023, 1, 1, 9, 0, tzinfo=UTC)
    index = 0
    while True:
        n = turns_per_session + rng.choice((-2, 0, 0, 2))
        theme = _slots(rng)
        messages = []
        for turn in range(n):
            slots = _slots(rng)
            if rng.random() < 0.5:  # stay on the session's theme half of the time
                slots.update({k: theme[k] for k in ("topic", "thing", "name")})
            role = "user" if turn % 2 == 0 else "assistant"
            templates = USER_TEMPLATES if role == "user" else ASSISTANT_TEMPLATES
            messages.append({"role": role, "content": _fill(rng.choice(templates), slots)})
        yield f"s{index:06d}", date, messages
        index += 1
        date += timedelta(hours=rng.randint(6, 60))


def generate_queries(seed: int, n: int) -> list[str]:
    rng = random.Random(seed + 1_000_003)
    return [_fill(rng.choice(QUERY_TEMPLATES), _slots(rng)) for _ in range(n)]


# -- measurement helpers ------------------------------------------------------------------------


class TimedEmbedder:
    """Wraps an embedder and adds up the seconds spent in ``embed_batch``."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.texts = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        start = time.perf_counter()
        out = self.inner.embed_batch(texts)
        self.seconds += time.perf_counter() - start
        self.texts += len(texts)
        return out


class OnnxFillEmbedder:
    """The bundled weights exported to ONNX and run with onnxruntime; same name and vectors as
    the default embedder, several times faster on a busy CPU. Only used to fill the store."""

    def __init__(self, name: str, workdir: Path) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import embedders  # benchmarks/embedders.py

        embedders.export_onnx(workdir)
        self._encode = embedders.onnx_encoder(workdir / "minilm-fp32.onnx")
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return 384

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, 64)


def _proc_status(field_name: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50_ms": round(_percentile(ms, 50), 3),
        "p95_ms": round(_percentile(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parent,
    ).stdout.strip()  # fmt: skip
    return {
        "engram_commit": commit or "unknown",
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "loadavg_start": os.getloadavg(),
    }


def checkpoint_and_size(db: Path) -> dict[str, Any]:
    """Checkpoint the WAL from a fresh connection, then measure the files and each table."""
    conn = sqlite3.connect(db)
    try:
        busy, _log, _moved = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        try:
            tables = dict(
                conn.execute(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
                ).fetchall()
            )
        except sqlite3.OperationalError:  # SQLite built without the dbstat table
            tables = {}
    finally:
        conn.close()
    files = {p.name: p.stat().st_size for p in db.parent.glob(db.name + "*")}
    return {"checkpoint_busy": busy, "files": files, "bytes": sum(files.values()), "tables": tables}


# -- phases ---------------------------------------------------------------------------------------


@dataclass
class IngestState:
    sessions: Iterator[tuple[str, datetime, list[dict[str, str]]]]
    turns: int = 0


def ingest_until(mem: Memory, timed: TimedEmbedder, state: IngestState, target: int) -> dict:
    """Add whole sessions until ``target`` turns are stored; time every ``add``."""
    if state.turns >= target:
        return {}
    start_turns, start_embed, start_texts = state.turns, timed.seconds, timed.texts
    add_seconds: list[float] = []
    started = time.perf_counter()
    last_report = started
    while state.turns < target:
        session_id, date, messages = next(state.sessions)
        t0 = time.perf_counter()
        mem.add(messages, user_id=USER, session_id=session_id, session_date=date)
        add_seconds.append(time.perf_counter() - t0)
        state.turns += len(messages)
        if time.perf_counter() - last_report > 30:
            last_report = time.perf_counter()
            rate = (state.turns - start_turns) / (last_report - started)
            print(f"  {state.turns:,} turns, {rate:.1f} turns/s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    turns = state.turns - start_turns
    embed = timed.seconds - start_embed
    segment = {
        "embedder": type(timed.inner).__name__,
        "from_turns": start_turns,
        "to_turns": state.turns,
        "turns": turns,
        "records_embedded": timed.texts - start_texts,
        "sessions": len(add_seconds),
        "wall_s": round(wall, 2),
        "turns_per_s": round(turns / wall, 1),
        "embed_s": round(embed, 2),
        "store_and_other_s": round(wall - embed, 2),
        "add_call": _summary_ms(add_seconds),
        "loadavg_end": os.getloadavg(),
    }
    return segment


def measure_search(
    path: Path, embedder: SentenceTransformerEmbedder, queries: Sequence[str]
) -> dict[str, Any]:
    """Per preset, on a freshly opened ``Memory`` (empty query cache): a warm-up search that
    loads the vector matrix, then each query twice: cold (query embedded) and warm (cached)."""
    results: dict[str, Any] = {}
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for preset in PRESETS:
        with Memory.open(path, embedder=embedder) as mem:
            t0 = time.perf_counter()
            mem.search("warm-up question about nothing", user_id=USER, config=preset)
            first = time.perf_counter() - t0
            cold, warm, hits = [], [], []
            for query in queries:
                t0 = time.perf_counter()
                found = mem.search(query, user_id=USER, limit=10, config=preset, question_date=now)
                cold.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                mem.search(query, user_id=USER, limit=10, config=preset, question_date=now)
                warm.append(time.perf_counter() - t0)
                hits.append(len(found))
        results[preset] = {
            "first_search_after_open_ms": round(first * 1000, 1),
            "with_query_embedding": _summary_ms(cold),
            "query_cached": _summary_ms(warm),
            "mean_hits": statistics.fmean(hits),
        }
        print(f"  {preset}: {results[preset]}", file=sys.stderr, flush=True)
    return results


def probe_rss(path: Path) -> dict[str, Any]:
    """In a fresh process: RSS with the model loaded and every preset searched once."""
    code = (
        "import json,sys,time\n"
        "from pathlib import Path\n"
        "from engram import Memory\n"
        "def status(f):\n"
        "    line=[x for x in Path('/proc/self/status').read_text().splitlines()"
        " if x.startswith(f+':')][0]\n"
        "    return int(line.split()[1])*1024\n"
        "t=time.perf_counter()\n"
        "mem=Memory.open(sys.argv[1])\n"
        f"for p in {PRESETS!r}: mem.search('where did I go hiking', user_id={USER!r}, config=p)\n"
        "print(json.dumps({'open_and_first_searches_s': round(time.perf_counter()-t, 2),\n"
        "  'rss_bytes': status('VmRSS'), 'peak_rss_bytes': status('VmHWM')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def ingest_to(
    db: Path, embedders: Sequence[TimedEmbedder], state: IngestState, targets: Sequence[int]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Ingest with ``embedders[i]`` up to ``targets[i]``; one ``Memory`` per segment."""
    segments = []
    records: dict[str, int] = {}
    for timed, target in zip(embedders, targets, strict=True):
        with Memory.open(db, embedder=timed) as mem:
            segment = ingest_until(mem, timed, state, target)
            records = dict(mem.stats(user_id=USER).records)
        if segment:
            print(f"  {segment}", file=sys.stderr, flush=True)
            segments.append(segment)
    return segments, records


def count_turns(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM records WHERE kind = 'turn'").fetchone()[0])
    finally:
        conn.close()


def measure_store(
    db: Path, embedder: SentenceTransformerEmbedder, queries: Sequence[str]
) -> dict[str, Any]:
    """Size (after a WAL checkpoint), search latency and a fresh process's RSS for one file."""
    storage = checkpoint_and_size(db)
    turns = count_turns(db)
    return {
        "turns": turns,
        "storage": storage,
        "bytes_per_1k_turns": round(storage["bytes"] / turns * 1000),
        "search": measure_search(db, embedder, queries),
        "rss_probe": probe_rss(db),
        "loadavg": os.getloadavg(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "sizes": []}
    queries = generate_queries(args.seed, args.queries)
    embedder = SentenceTransformerEmbedder()
    t0 = time.perf_counter()
    embedder.embed_batch(["load the model"])
    report["model_load_s"] = round(time.perf_counter() - t0, 2)
    if args.measure:  # existing files only: no ingest
        for path in args.measure:
            print(f"measuring {path}", file=sys.stderr, flush=True)
            report["sizes"].append(measure_store(Path(path), embedder, queries))
            Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        return report
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="engram-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "bench.db"
    if db.exists():
        raise SystemExit(f"{db} exists; pick an empty --dir")
    report["rss_empty_store_probe"] = probe_rss(workdir / "empty.db")
    default = TimedEmbedder(embedder)
    fill = default
    if args.fill_embedder == "onnx":
        fill = TimedEmbedder(OnnxFillEmbedder(embedder.name, workdir))
    state = IngestState(generate_sessions(args.seed, args.session_turns))
    for size in sorted(args.sizes):
        print(f"ingesting to {size:,} turns", file=sys.stderr, flush=True)
        targets = [max(size - args.probe_turns, 0), size]
        segments, records = ingest_to(db, [fill, default], state, targets)
        entry = {"records": records, "ingest_segments": segments}
        entry.update(measure_store(db, embedder, queries))
        if args.keep:
            checkpoint_and_size(db)
            shutil.copyfile(db, workdir / f"bench-{size}.db")
        report["sizes"].append(entry)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    report["machine"]["loadavg_end"] = os.getloadavg()
    if not args.keep:
        for p in workdir.glob("*.db*"):
            p.unlink()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--session-turns", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fill-embedder", choices=("torch", "onnx"), default="torch",
        help="embedder for all but the last --probe-turns turns before each size",
    )  # fmt: skip
    parser.add_argument("--probe-turns", type=int, default=2000)
    parser.add_argument("--dir", help="where to put the database (default: a new temp dir)")
    parser.add_argument(
        "--keep", action="store_true",
        help="keep the database, and a copy of it at each size (bench-SIZE.db)",
    )  # fmt: skip
    parser.add_argument(
        "--measure", nargs="+", metavar="DB",
        help="only measure these existing files (size, search, RSS); no ingest",
    )  # fmt: skip
    parser.add_argument("--out", default="results.json")
    args = parser.parse_args(argv)
    report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
