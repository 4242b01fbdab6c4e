"""Search capacity of one process against several: closed-loop searches (no think time) on a
store built by ``serve_load.py``, ``--threads`` threads per process, ``--procs`` processes.

Answers "what caps the operations per second of one server process?": if one process with
many threads uses about one core while two processes use two, the cap is the interpreter lock
(or a process-wide lock), not the CPU. Prints, per configuration, the searches per second, the
latency percentiles and the CPU cores used (process CPU time over wall time, all processes).

    python benchmarks/search_capacity.py --db /work/tmp/serve-load.db --procs 1,2 --threads 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import LOCOMO  # benchmarks/serve_load.py

from engram import BatchingEmbedder, Memory
from engram.bench.locomo import load_locomo
from engram.config import make_embedder


def _questions(path: Path) -> list[str]:
    return list(dict.fromkeys(q.question for s in load_locomo(path).samples for q in s.qa))


def _worker(args: dict[str, Any], ready: Any, start: Any, out: Any) -> None:
    """One process: ``threads`` threads searching until the deadline; its latencies and CPU."""
    embedder: Any = make_embedder("bundled")
    if args["batch_max"] > 1:
        embedder = BatchingEmbedder(embedder, max_batch=args["batch_max"])
    mem = Memory.open(args["db"], embedder=embedder)
    queries = _questions(Path(args["locomo"]))
    rng = random.Random(os.getpid())
    for u in range(args["users"]):  # load every user's matrix, untimed
        mem.search(queries[u], user_id=f"user-{u:02d}", limit=10)
    latencies: list[float] = []
    lock = threading.Lock()
    ready.put(os.getpid())
    start.wait()
    deadline = time.monotonic() + args["seconds"]
    cpu0, wall0 = time.process_time(), time.monotonic()

    def loop(seed: int) -> None:
        r = random.Random(seed)
        while time.monotonic() < deadline:
            t = time.perf_counter()
            user = f"user-{r.randrange(args['users']):02d}"
            mem.search(r.choice(queries), user_id=user, limit=10)
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=loop, args=(rng.random(),)) for _ in range(args["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"latencies": latencies, "cpu": time.process_time() - cpu0,
             "wall": time.monotonic() - wall0})  # fmt: skip
    mem.close()


def run(procs: int, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    spec = {
        "db": str(args.db), "locomo": str(args.locomo), "users": args.users,
        "threads": args.threads, "seconds": args.seconds, "batch_max": args.batch_max,
    }  # fmt: skip
    workers = [ctx.Process(target=_worker, args=(spec, ready, start, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    for _ in workers:  # every process has loaded the model and the users' matrices
        ready.get(timeout=600)
    start.set()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    lat = sorted(x for r in results for x in r["latencies"])
    wall = max(r["wall"] for r in results)

    def at(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)

    return {
        "procs": procs, "threads_per_proc": args.threads, "searches": len(lat),
        "searches_per_s": round(len(lat) / wall, 1),
        "p50_ms": at(0.5), "p95_ms": at(0.95), "mean_ms": round(statistics.fmean(lat) * 1000, 1),
        "cores_used": round(sum(r["cpu"] for r in results) / wall, 2),
        "cpu_ms_per_search": round(sum(r["cpu"] for r in results) / len(lat) * 1000, 1),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--locomo", type=Path, default=LOCOMO)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--procs", default="1,2")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--batch-max", type=int, default=64)
    args = p.parse_args()
    for n in (int(x) for x in args.procs.split(",")):
        print(json.dumps(run(n, args)), flush=True)


if __name__ == "__main__":
    main()
