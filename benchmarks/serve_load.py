"""Load on the servers: concurrent clients mixing searches and adds against a store of
``--users`` users x ``--turns`` turns, embedded ``Memory`` vs REST vs MCP in one run.

The store is built once (unless ``--db`` exists) through the public API with the bundled model:
each user gets the LoCoMo development conversations, cycled from a different starting session,
each pass moved on by two years, until it has ``--turns`` turns. Vectors go through a disk cache
(``<db>.vectors``), so each distinct text is embedded once; the texts repeat every ~2,900 turns
within a user (the vocabulary is real, the duplicates are a cost-saving shortcut).

Then, for each mode (after one untimed search per user, which loads the users' vector matrices
into the fresh process) and each client count, ``--duration`` seconds of load: every client loops
``think (exponential, mean --think s) -> search (share 1 - --write-share) or add``. A search is a
LoCoMo question for a random user; an add stores one new message (unique text) in the client's
own session of a random user. The server processes use the bundled model with no vector cache,
so every add and every new query costs a real model call, micro-batched as configured. Latencies
are measured in the client (so they include HTTP / MCP and this process's own overhead: the load
generator shares the machine's cores with the server). After each run every acknowledged add is
looked up in the file: all must be there.

An ingest phase (``--ingest-seconds`` each) measures sustained turns/s: ``--ingest-clients``
clients without think time, each posting sessions of ``--ingest-batch`` new turns per add, then
one turn per add: through REST with and without micro-batching, and embedded with it.

    python benchmarks/serve_load.py --db /work/serve-load.db
    python benchmarks/serve_load.py --db /tmp/small.db --users 4 --turns 500 --duration 10 \\
        --clients 1,10 --ingest-seconds 10

Writes ``benchmarks/results/serve-load.json`` (``--out``) with the settings, machine, every
level's counts and percentiles and the verification, and prints the tables of
docs/benchmarks.md (``python benchmarks/serve_load.py --report FILE.json`` prints them again).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_search import machine_info  # benchmarks/ingest_search.py
from serve_load_drivers import Driver, EmbeddedDriver, McpDriver, RestDriver, dumps

from engram import DiskCachedEmbedder, Memory
from engram.bench.locomo import LocomoSample, load_locomo
from engram.config import make_embedder

LOCOMO = Path(__file__).resolve().parents[2] / "shared/data/locomo/locomo_dev5.json"
RESULTS = Path(__file__).resolve().parent / "results"


# -- the store ----------------------------------------------------------------------------------


def user_sessions(samples: list[LocomoSample], start: int) -> Any:
    """(session_id, date, messages) forever: every LoCoMo session, from the ``start``-th on."""
    flat = [(s, sess) for s in samples for sess in s.conversation.sessions]
    for n in itertools.count():
        for i in range(len(flat)):
            sample, session = flat[(start + i) % len(flat)]
            conv = sample.conversation
            messages = [
                {"role": "user" if t.speaker == conv.speaker_a else "assistant",
                 "content": t.text, "name": t.speaker}
                for t in session.turns
            ]  # fmt: skip
            date = session.date + timedelta(days=730 * n) if session.date else None
            yield f"p{n}-{sample.sample_id}-{session.session_id}", date, messages


def build(
    db: Path, samples: list[LocomoSample], users: int, turns: int, spec: str
) -> dict[str, Any]:
    embedder = DiskCachedEmbedder(make_embedder(spec), f"{db}.vectors")
    started = time.perf_counter()
    with Memory.open(db, embedder=embedder) as mem:
        for u in range(users):
            stored = 0
            for session_id, date, messages in user_sessions(samples, start=u * 7):
                chunk = messages[: turns - stored]
                mem.add(chunk, user_id=f"user-{u:02d}", session_id=session_id, session_date=date)
                stored += len(chunk)
                if stored >= turns:
                    break
            print(f"  user {u + 1}/{users}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return {
        "users": users,
        "turns_per_user": turns,
        "build_s": round(time.perf_counter() - started),
    }


# -- one load level -----------------------------------------------------------------------------


class Level:
    """What the clients of one run saw."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {"search": [], "add": []}
        self.errors: Counter[str] = Counter()
        self.acked: list[tuple[str, str, str]] = []  # (user, session, text) of every 201

    def summary(self, clients: int, seconds: float) -> dict[str, Any]:
        out: dict[str, Any] = {"clients": clients, "seconds": round(seconds, 1)}
        total = 0
        for op, values in self.latency.items():
            total += len(values)
            out[op] = percentiles(values)
        out["ops_per_s"] = round(total / seconds, 1)
        out["errors"] = dict(self.errors)
        return out


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(values), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "mean_ms": round(statistics.fmean(values) * 1000, 1)}  # fmt: skip


async def client_loop(
    driver: Driver, n: int, args: argparse.Namespace, queries: list[str], level: Level,
    stop_at: float,
) -> None:  # fmt: skip
    rng = random.Random(f"{args.seed}-{driver.name}-{n}")
    session = await driver.session()
    tag = f"{args.run}-{driver.name}-{args.clients_now}-{n}"
    count = 0
    try:
        while True:
            if args.think > 0:
                await asyncio.sleep(rng.expovariate(1 / args.think))
            if time.monotonic() >= stop_at:
                break
            user = f"user-{rng.randrange(args.users):02d}"
            op = "add" if rng.random() < args.write_share else "search"
            started = time.perf_counter()
            try:
                if op == "search":
                    await session.search(user, rng.choice(queries))
                else:
                    count += 1
                    text = (
                        f"{rng.choice(queries).rstrip('?')}, noted by load client {tag} #{count}."
                    )
                    await session.add(user, f"load-{tag}", [{"role": "user", "content": text}])
                    level.acked.append((user, f"load-{tag}", text))
            except Exception as exc:  # counted, and the run is failed by the report
                level.errors[f"{op}: {type(exc).__name__}: {str(exc)[:120]}"] += 1
                continue
            level.latency[op].append(time.perf_counter() - started)
    finally:
        await session.close()


async def run_level(
    driver: Driver, clients: int, args: argparse.Namespace, queries: list[str]
) -> Level:
    level = Level()
    args.clients_now = clients
    stop_at = time.monotonic() + args.duration
    await asyncio.gather(
        *(client_loop(driver, n, args, queries, level, stop_at) for n in range(clients))
    )
    return level


# -- ingest -------------------------------------------------------------------------------------


async def ingest(driver: Driver, args: argparse.Namespace, samples: list[LocomoSample]) -> Any:
    """Closed-loop clients posting sessions of new turns; sustained turns/s."""
    turns = [t.text for s in samples for sess in s.conversation.sessions for t in sess.turns]
    level = Level()
    stored = 0
    stop_at = time.monotonic() + args.ingest_seconds

    async def one(n: int) -> None:
        nonlocal stored
        session = await driver.session()
        rng = random.Random(f"ingest-{driver.name}-{n}")
        k = 0
        try:
            while time.monotonic() < stop_at:
                k += 1
                name = f"ingest-{args.run}-{driver.name}-{args.ingest_tag}-{n}-{k}"
                batch = [
                    {"role": "user" if i % 2 == 0 else "assistant",
                     "content": f"{rng.choice(turns)} ({name} {i})"}
                    for i in range(args.ingest_batch_now)
                ]  # fmt: skip
                started = time.perf_counter()
                try:
                    added = await session.add("ingest-user", name, batch)
                except Exception as exc:
                    level.errors[f"add: {type(exc).__name__}: {str(exc)[:120]}"] += 1
                    continue
                stored += added  # not `stored += await ...`: that reads `stored` before awaiting
                level.latency["add"].append(time.perf_counter() - started)
                level.acked.extend(("ingest-user", name, m["content"]) for m in batch)
        finally:
            await session.close()

    began = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(args.ingest_clients)))
    seconds = time.monotonic() - began
    summary = level.summary(args.ingest_clients, seconds)
    summary["turns"] = stored
    summary["turns_per_s"] = round(stored / seconds, 1)
    return summary, level


# -- verification -------------------------------------------------------------------------------


def verify(db: Path, acked: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Every acknowledged add is in the file; the file is intact."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        missing = 0
        for (user, session), texts in _group(acked).items():
            stored = {
                r[0] for r in conn.execute(
                    "SELECT text FROM records WHERE user_id = ? AND session_id = ? "
                    "AND kind = 'turn'", (user, session),
                )
            }  # fmt: skip
            missing += len(texts - stored)
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return {"acknowledged": len(acked), "missing": missing, "integrity": integrity}


def _group(acked: list[tuple[str, str, str]]) -> dict[tuple[str, str], set[str]]:
    groups: dict[tuple[str, str], set[str]] = {}
    for user, session, text in acked:
        groups.setdefault((user, session), set()).add(text)
    return groups


# -- the run ------------------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)
    return env


def make_driver(mode: str, args: argparse.Namespace, clients: int, batch_max: int) -> Driver:
    env = child_env(
        ENGRAM_BATCH_MAX=str(batch_max), ENGRAM_THREADS=str(args.threads),
        ENGRAM_EMBEDDER=args.embedder,
    )  # fmt: skip
    if mode == "embedded":
        return EmbeddedDriver(args.db, args.threads, batch_max, args.embedder)
    if mode == "rest" or mode.startswith("rest-w"):  # rest-wN: N server processes
        workers = int(mode[len("rest-w") :]) if mode.startswith("rest-w") else 1
        return RestDriver(args.db, clients, env, workers=workers)
    return McpDriver(args.db, env)


async def close_driver(driver: Driver) -> dict[str, Any]:
    aclose = getattr(driver, "aclose", None)
    if aclose is not None:
        await aclose()
    return driver.stop()


WARM_PARALLEL = 8  # concurrent warm-up searches per user: connections reach every worker


async def warm(driver: Driver, args: argparse.Namespace, queries: list[str]) -> float:
    """Untimed searches for every user before the clock starts, so that each user's vector
    matrix is loaded (a fresh server process loads it on the user's first search, ~0.5 s at 10k
    turns): ``WARM_PARALLEL`` at once per user, so that with several server workers the pooled
    connections they open land on every worker (all on one of two: p = 2 / 2**8)."""
    started = time.perf_counter()
    sessions = [await driver.session() for _ in range(WARM_PARALLEL)]
    try:
        for u in range(args.users):
            await asyncio.gather(*(
                s.search(f"user-{u:02d}", queries[(u + k) % len(queries)])
                for k, s in enumerate(sessions)
            ))  # fmt: skip
    finally:
        for s in reversed(sessions):  # an MCP client's scopes close in the reverse order
            await s.close()
    return round(time.perf_counter() - started, 1)


async def run_mode(mode: str, args: argparse.Namespace, queries: list[str]) -> dict[str, Any]:
    levels, acked = [], []
    driver = make_driver(mode, args, max(args.clients), args.batch_max)
    try:
        warm_s = await warm(driver, args, queries)
        for clients in args.clients:
            level = await run_level(driver, clients, args, queries)
            levels.append(level.summary(clients, args.duration))
            acked.extend(level.acked)
            print(f"{mode:>8} {clients:>4} clients: {dumps(levels[-1])}", file=sys.stderr)
    finally:
        info = await close_driver(driver)
    return {"levels": levels, "warm_up_s": warm_s, "verify": verify(args.db, acked), **info}


async def run_ingest(
    mode: str, batch_max: int, per_add: int, args: argparse.Namespace, samples: list[LocomoSample]
) -> dict[str, Any]:
    args.ingest_tag = f"b{batch_max}-t{per_add}"
    args.ingest_batch_now = per_add
    driver = make_driver(mode, args, args.ingest_clients, batch_max)
    try:
        summary, level = await ingest(driver, args, samples)
    finally:
        info = await close_driver(driver)
    summary.update(
        mode=mode, batch_max=batch_max, turns_per_add=per_add,
        verify=verify(args.db, level.acked), **info,
    )  # fmt: skip
    print(
        f"ingest {mode} batch_max={batch_max} per_add={per_add}: {dumps(summary)}", file=sys.stderr
    )
    return summary


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--locomo", type=Path, default=LOCOMO)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--turns", type=int, default=10_000, help="turns per user")
    p.add_argument("--clients", default="1,10,50,200")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per level")
    p.add_argument("--think", type=float, default=1.0, help="mean think time per client, s")
    p.add_argument("--write-share", type=float, default=0.2)
    p.add_argument(
        "--modes", default="embedded,rest,mcp",
        help="embedded, rest, rest-wN (engram serve --workers N), mcp",
    )  # fmt: skip
    p.add_argument("--batch-max", type=int, default=64)
    p.add_argument(
        "--threads", type=int, default=32,
        help="worker threads: the servers' (ENGRAM_THREADS, their default) and the embedded pool's",
    )  # fmt: skip
    p.add_argument(
        "--embedder", default="bundled",
        help="embedder spec of the store and every mode (hash: the serving layer without a model)",
    )  # fmt: skip
    p.add_argument("--ingest-seconds", type=float, default=30.0, help="0: no ingest phase")
    p.add_argument("--ingest-clients", type=int, default=16)
    p.add_argument(
        "--ingest-batch", type=int, default=10,
        help="turns per add in the first ingest round (the second adds one turn per request)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-only", action="store_true", help="build the store, measure nothing")
    p.add_argument("--out", type=Path, default=RESULTS / "serve-load.json")
    args = p.parse_args(argv)
    # every run's added texts are new: an add of a text already stored is a no-op (idempotent
    # adds), which would measure nothing
    args.run = time.strftime("r%Y%m%d%H%M%S")
    args.clients = [int(c) for c in args.clients.split(",")]
    args.modes = args.modes.split(",")
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    samples = load_locomo(args.locomo).samples
    queries = [qa.question for s in samples for qa in s.qa]
    report: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine_info()}
    report["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    if not args.db.exists():
        report["build"] = build(args.db, samples, args.users, args.turns, args.embedder)
    if args.build_only:
        args.modes, args.ingest_seconds = [], 0
    report["modes"] = {}
    for mode in args.modes:
        report["modes"][mode] = await run_mode(mode, args, queries)
        save(args.out, report)  # each mode as it ends: a run that stops later keeps it
    if args.ingest_seconds > 0:
        report["ingest"] = []
        for per_add in (args.ingest_batch, 1):  # a session's turns at once; one message a request
            several = [m for m in args.modes if m.startswith("rest-w")]
            for mode, batch_max in (
                ("rest", args.batch_max),
                *((m, args.batch_max) for m in several),
                ("rest", 1),
                ("embedded", args.batch_max),
            ):
                phase = await run_ingest(mode, batch_max, per_add, args, samples)
                report["ingest"].append(phase)
                save(args.out, report)
    return report


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, from a report."""
    head = (
        "| mode | clients | ops/s | search p50 / p95 / p99 ms | add p50 / p95 / p99 ms | errors |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for mode, result in report["modes"].items():
        for lv in result["levels"]:
            cells = [
                f"{lv[op]['p50_ms']:,} / {lv[op]['p95_ms']:,} / {lv[op]['p99_ms']:,}"
                if lv[op]["n"] else "-" for op in ("search", "add")
            ]  # fmt: skip
            errors = sum(lv["errors"].values())
            row = (mode, lv["clients"], lv["ops_per_s"], cells[0], cells[1], errors)
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
    head = "| ingest | turns per add | micro-batching | turns/s | add p50 / p95 ms | errors |"
    lines += ["", head, "|---|---:|---|---:|---:|---:|"]
    for phase in report.get("ingest", []):
        batching = "on" if phase["batch_max"] > 1 else "off"
        add = phase["add"]
        timing = f"{add.get('p50_ms', '-'):,} / {add.get('p95_ms', '-'):,}"
        row = (phase["mode"], phase.get("turns_per_add", 10), batching, phase["turns_per_s"],
               timing, sum(phase["errors"].values()))  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def save(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(report) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--report":
        print(markdown(json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))))
        return 0
    args = parse(argv)
    report = asyncio.run(amain(args))
    save(args.out, report)
    print(markdown(report))
    failed = any(lv["errors"] for v in report["modes"].values() for lv in v["levels"]) or any(
        v["verify"]["missing"] for v in report["modes"].values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
