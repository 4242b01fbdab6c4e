"""Scale of the vector side: one user's memory of many turns, and what a fresh process pays for
its first search.

Builds one user's memory of ``--turns`` turns through the public API (``Memory`` over a
``SqliteStore`` file, ``HashEmbedder``: a fast deterministic fake, fine here since only time and
memory are measured), unless ``--db`` already exists. The text is the LoCoMo development file's
conversations, cycled: each pass renames the two speakers (in the text too) and moves the dates
on, and every session is added in batches of ``--batch`` turns.

Then, each in a fresh subprocess: the first search after open (``hybrid`` and ``semantic``
presets) with its wall time and peak RSS (``ru_maxrss`` minus the RSS just before the search,
compared with the ``n * dim * 4`` bytes of the matrix), the median of the next ``--searches``,
each the median over ``--repeats`` processes; and, on a copy of the file, ``Memory.delete`` of a
turn and ``Memory.forget`` of a session::

    python benchmarks/scale.py --turns 10000 --db /tmp/scale-10k.db
    python benchmarks/scale.py --turns 200000 --db /work/scale-200k.db --cold

``--cold`` drops the page cache before each subprocess as well (needs root; skipped, and said
so, where not permitted). Writes ``benchmarks/results/scale-<turns>.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_search import (  # benchmarks/ingest_search.py
    NAMES,
    _proc_status,
    checkpoint_and_size,
    count_turns,
    machine_info,
)

from engram import HashEmbedder, Memory, SqliteStore
from engram.bench.locomo import LocomoSample, load_locomo

USER = "scale-user"
LOCOMO = Path(__file__).resolve().parents[2] / "shared/data/locomo/locomo_dev5.json"
RESULTS = Path(__file__).resolve().parent / "results"

# -- the corpus -----------------------------------------------------------------------------------


def sessions(samples: Sequence[LocomoSample]) -> Iterator[tuple[str, Any, list[dict[str, str]]]]:
    """An endless stream of (session_id, date, messages): the LoCoMo sessions, pass after pass,
    with the speakers renamed and the dates moved on by two years per pass."""
    for n in itertools.count():
        for k, sample in enumerate(samples):
            conv = sample.conversation
            a, b = NAMES[(n + 2 * k) % len(NAMES)], NAMES[(n + 2 * k + 7) % len(NAMES)]
            for session in conv.sessions:
                messages = []
                for turn in session.turns:
                    text = turn.text.replace(conv.speaker_a, a).replace(conv.speaker_b, b)
                    user = turn.speaker == conv.speaker_a
                    messages.append(
                        {"role": "user" if user else "assistant", "content": text,
                         "name": a if user else b}
                    )  # fmt: skip
                date = session.date + timedelta(days=730 * n) if session.date else None
                yield f"p{n:03d}-{sample.sample_id}-{session.session_id}", date, messages


def questions(samples: Sequence[LocomoSample]) -> list[str]:
    return [qa.question for sample in samples for qa in sample.qa]


def open_memory(db: Path, dim: int) -> Memory:
    return Memory(store=SqliteStore(db), embedder=HashEmbedder(dim))


def build(db: Path, locomo: Path, turns: int, batch: int, dim: int) -> dict[str, Any]:
    """Add sessions (``batch`` turns per ``add``) until ``turns`` turns are stored."""
    samples = load_locomo(locomo).samples
    stored, started, last = 0, time.perf_counter(), time.perf_counter()
    with open_memory(db, dim) as mem:
        for session_id, date, messages in sessions(samples):
            messages = messages[: turns - stored]
            for start in range(0, len(messages), batch):
                chunk = messages[start : start + batch]
                mem.add(chunk, user_id=USER, session_id=session_id, session_date=date)
                stored += len(chunk)
            if stored >= turns:
                break
            if time.perf_counter() - last > 30:
                last = time.perf_counter()
                rate = stored / (last - started)
                print(f"  {stored:,} turns, {rate:.0f} turns/s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    return {"turns": stored, "wall_s": round(wall, 1), "turns_per_s": round(stored / wall, 1)}


# -- the measurements, each in a fresh process ----------------------------------------------------


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child_search(db: Path, locomo: Path, dim: int, preset: str, searches: int) -> dict[str, Any]:
    """Open, then time the first search (it loads the user's matrix) and the next ones."""
    queries = questions(load_locomo(locomo).samples)
    with open_memory(db, dim) as mem:
        mem.stats(user_id=USER)  # the file is open and its schema read
        rss_before = _proc_status("VmRSS")
        t0 = time.perf_counter()
        mem.search(queries[0], user_id=USER, config=preset)
        first = time.perf_counter() - t0
        peak = _peak_rss()
        rss_after = _proc_status("VmRSS")
        times = []
        for query in queries[1 : searches + 1]:
            t0 = time.perf_counter()
            mem.search(query, user_id=USER, config=preset)
            times.append(time.perf_counter() - t0)
    return {
        "first_search_ms": round(first * 1000, 1),
        "next_searches_median_ms": round(statistics.median(times) * 1000, 2) if times else None,
        "rss_before_search_bytes": rss_before,
        "rss_after_search_bytes": rss_after,
        "peak_rss_bytes": peak,
        "peak_growth_bytes": peak - rss_before,
    }


def child_writes(db: Path, dim: int, deletes: int, forgets: int) -> dict[str, Any]:
    """On a copy: delete single turns, forget whole sessions, then one search (a reload)."""
    conn = sqlite3.connect(db)
    names = [row[0] for row in conn.execute(
        "SELECT DISTINCT session_id FROM records WHERE user_id = ? ORDER BY session_id", (USER,)
    )]  # fmt: skip
    conn.close()
    step = max(1, len(names) // (deletes + forgets))
    picked = names[::step][: deletes + forgets]
    with open_memory(db, dim) as mem:
        mem.search("warm up", user_id=USER)  # the matrix is loaded, as in a running agent
        victims = [mem.list(user_id=USER, session_id=s, limit=1)[0].id for s in picked[:deletes]]
        delete_s, forget_s = [], []
        for record_id in victims:
            t0 = time.perf_counter()
            mem.delete(record_id, user_id=USER)
            delete_s.append(time.perf_counter() - t0)
        for session_id in picked[deletes:]:
            t0 = time.perf_counter()
            mem.forget(user_id=USER, session_id=session_id)
            forget_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mem.search("what happened after that?", user_id=USER, config="semantic")
        reload = time.perf_counter() - t0
    return {
        "delete_median_ms": round(statistics.median(delete_s) * 1000, 1),
        "forget_session_median_ms": round(statistics.median(forget_s) * 1000, 1),
        "deletes": len(delete_s),
        "forgets": len(forget_s),
        "search_after_writes_ms": round(reload * 1000, 1),
    }


def drop_page_cache() -> bool:
    """Drop the OS page cache (root only); False where not permitted."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def in_child(args: argparse.Namespace, *extra: str, cold: bool = False) -> dict[str, Any]:
    dropped = drop_page_cache() if cold else False
    command = [sys.executable, __file__, "--db", str(args.db), "--locomo", str(args.locomo),
               "--dim", str(args.dim), *extra]  # fmt: skip
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result | ({"page_cache_dropped": dropped} if cold else {})


def matrix_shape(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        (rows,) = conn.execute("SELECT COUNT(*) FROM vectors WHERE user_id = ?", (USER,)).fetchone()
        (dim,) = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
    finally:
        conn.close()
    return int(rows), int(dim)


def first_searches(
    args: argparse.Namespace, preset: str, *, cold: bool, matrix: int
) -> dict[str, Any]:
    """``--repeats`` fresh processes (after a warm-up one, or each after dropping the page
    cache); medians over them, the largest peak."""
    search = ("--child", "search", "--preset", preset)
    if not cold:
        in_child(args, *search, "--searches", "0")  # the file in the page cache
    runs = []
    for _ in range(args.repeats):
        found = in_child(args, *search, "--searches", str(args.searches), cold=cold)
        runs.append(found | {"loadavg_1min": round(os.getloadavg()[0], 2)})
    peak = max(run["peak_growth_bytes"] for run in runs)
    return {
        "first_search_ms": statistics.median(run["first_search_ms"] for run in runs),
        "next_searches_median_ms": statistics.median(
            run["next_searches_median_ms"] for run in runs
        ),
        "peak_growth_bytes": peak,
        "peak_growth_to_matrix": round(peak / matrix, 2),
        "runs": runs,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows, dim = matrix_shape(args.db)
    matrix = rows * dim * 4
    report: dict[str, Any] = {
        "turns": count_turns(args.db), "vectors": rows, "dim": dim, "matrix_bytes": matrix,
        "storage": checkpoint_and_size(args.db), "search": {},
    }  # fmt: skip
    caches = ("warm", "cold") if args.cold else ("warm",)
    for preset, cache in itertools.product(("hybrid", "semantic"), caches):
        found = first_searches(args, preset, cold=cache == "cold", matrix=matrix)
        report["search"][f"{preset}/{cache}"] = found
        print(f"  {preset}/{cache}: {found}", file=sys.stderr, flush=True)
    if args.deletes or args.forgets:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            copy = Path(tmp) / "copy.db"
            shutil.copyfile(args.db, copy)
            report["writes"] = in_child(
                argparse.Namespace(db=copy, locomo=args.locomo, dim=args.dim), "--child", "writes",
                "--deletes", str(args.deletes), "--forgets", str(args.forgets),
            )  # fmt: skip
        print(f"  writes: {report['writes']}", file=sys.stderr, flush=True)
    return report


def table(report: dict[str, Any]) -> str:
    mb = 1e6
    lines = [
        f"{report['turns']:,} turns, {report['vectors']:,} vectors x {report['dim']} "
        f"(matrix {report['matrix_bytes'] / mb:,.0f} MB), file "
        f"{report['storage']['bytes'] / mb:,.0f} MB",
        "| search | first ms | next median ms | peak growth MB | / matrix |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in report["search"].items():
        lines.append(
            f"| {name} | {s['first_search_ms']:,.1f} | {s['next_searches_median_ms']:.2f} | "
            f"{s['peak_growth_bytes'] / mb:,.0f} | {s['peak_growth_to_matrix']:.2f}x |"
        )
    if "writes" in report:
        w = report["writes"]
        lines.append(
            f"delete median {w['delete_median_ms']:,.1f} ms ({w['deletes']}), forget(session) "
            f"median {w['forget_session_median_ms']:,.1f} ms ({w['forgets']}), search after "
            f"them {w['search_after_writes_ms']:,.1f} ms"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200_000)
    parser.add_argument("--db", type=Path, help="the store (built unless it exists)")
    parser.add_argument("--locomo", type=Path, default=LOCOMO, help="the LoCoMo file cycled")
    parser.add_argument("--dim", type=int, default=384, help="HashEmbedder dimension")
    parser.add_argument("--batch", type=int, default=10, help="turns per add")
    parser.add_argument("--searches", type=int, default=20, help="searches after the first")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per first search")
    parser.add_argument("--deletes", type=int, default=20)
    parser.add_argument("--forgets", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also with the page cache dropped")
    parser.add_argument("--tmp", help="where the copy for deletes goes (default: system temp)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/scale-<turns>.json")
    parser.add_argument("--child", choices=("search", "writes"), help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="hybrid", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.db = args.db or Path(tempfile.gettempdir()) / f"scale-{args.turns}.db"
    if args.child == "search":
        print(json.dumps(child_search(args.db, args.locomo, args.dim, args.preset, args.searches)))
        return
    if args.child == "writes":
        print(json.dumps(child_writes(args.db, args.dim, args.deletes, args.forgets)))
        return
    report: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    if not args.db.exists():
        print(f"building {args.turns:,} turns in {args.db}", file=sys.stderr, flush=True)
        report["build"] = build(args.db, args.locomo, args.turns, args.batch, args.dim)
    report.update(measure(args))
    report["machine"]["loadavg_end"] = os.getloadavg()
    out = args.out or RESULTS / f"scale-{args.turns}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
