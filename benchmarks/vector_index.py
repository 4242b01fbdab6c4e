#!/usr/bin/env python3
"""Evaluate vector-index choices for Engram's embedded (SQLite) default.

Candidates: exact numpy search (ground truth), a plain SQLite BLOB table scanned with numpy,
sqlite-vec ``vec0`` (float32, int8, bit + rerank; partition key vs metadata filter), hnswlib,
usearch and faiss (flat and HNSW). Every candidate is timed one query at a time on one thread.

Data is clustered Gaussian (cluster centres plus low-rank per-cluster spread plus isotropic
noise, then L2-normalised); queries are perturbed data points. ``--users U`` splits the same
vectors into U equal-size users at random and measures user-scoped search (ground truth is the
exact top-k within that user's rows); ``--users 1`` is the unscoped comparison.

Example::

    python benchmarks/vector_index.py --n 100000 --users 1 --users 100 --out results.json

Optional dependencies (skipped with a note when missing): sqlite-vec (plus pysqlite3-binary
when the interpreter's sqlite3 cannot load extensions), hnswlib, usearch, faiss-cpu.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

SearchFn = Callable[[np.ndarray, int], np.ndarray]
ALL_METHODS = (
    "numpy",
    "sqlite-blob",
    "sqlite-vec",
    "sqlite-vec-quant",
    "hnswlib",
    "usearch",
    "faiss-flat",
    "faiss-hnsw",
)
KINDS = ("fact", "episode", "preference", "procedure")
WARMUP_QUERIES = 2
MIN_QUERIES = 10


# --------------------------------------------------------------------------- data


@dataclass
class Scope:
    """One way of splitting the rows into users, with per-query ground truth."""

    users: int
    labels: np.ndarray  # (n,) user index of each row
    rows_by_user: list[np.ndarray]
    query_user: np.ndarray  # (nq,) user index each query is scoped to
    truth: np.ndarray  # (nq, k) exact top-k row ids within that user


@dataclass
class Context:
    """Everything a candidate family needs to build and evaluate itself."""

    x: np.ndarray
    queries: np.ndarray
    scopes: list[Scope]
    kinds: np.ndarray
    k: int
    budget_s: float
    build_threads: int
    tmpdir: Path
    hnsw_m: list[int]
    ef_search: list[int]
    vec_chunk_sizes: list[int]
    sqlite: ModuleType | None = None


@dataclass
class Result:
    n: int
    users: int
    per_user: int
    method: str
    params: str
    build_s: float
    size_mb: float
    rss_mb: float
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    recall: float = float("nan")
    queries: int = 0
    p50_vs_exact: float = float("nan")
    note: str = ""


def normalize(a: np.ndarray) -> np.ndarray:
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, clusters: int) -> np.ndarray:
    """Zipf-sized clusters, each spread along its own 16-d subspace, plus isotropic noise."""
    rank, sub_sigma, iso_sigma = 16, 0.15, 0.02
    centers = normalize(rng.standard_normal((clusters, dim), dtype=np.float32))
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.7
    assign = rng.choice(clusters, size=n, p=weights / weights.sum())
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(clusters + 1))
    x = np.empty((n, dim), dtype=np.float32)
    for c in range(clusters):
        rows = order[bounds[c] : bounds[c + 1]]
        if rows.size:
            basis = rng.standard_normal((rank, dim), dtype=np.float32) / np.sqrt(dim)
            z = rng.standard_normal((rows.size, rank), dtype=np.float32)
            x[rows] = centers[c] + sub_sigma * (z @ basis)
    for start in range(0, n, 100_000):
        block = x[start : start + 100_000]
        block += iso_sigma * rng.standard_normal(block.shape, dtype=np.float32)
    return normalize(x)


def exact_topk(mat: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k best inner products of q against mat, best first."""
    scores = mat @ q
    if scores.size <= k:
        return np.argsort(-scores)
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def make_scope(
    x: np.ndarray, queries: np.ndarray, src: np.ndarray, users: int, k: int, seed: int
) -> Scope:
    rng = np.random.default_rng(seed + users)
    labels = (rng.permutation(x.shape[0]) % users).astype(np.int32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(users + 1))
    rows_by_user = [np.sort(order[bounds[u] : bounds[u + 1]]) for u in range(users)]
    query_user = labels[src]
    truth = np.empty((len(queries), k), dtype=np.int64)
    for user in np.unique(query_user):
        rows = rows_by_user[user]
        mat = x if users == 1 else x[rows]
        for i in np.flatnonzero(query_user == user):
            truth[i] = rows[exact_topk(mat, queries[i], k)]
    return Scope(users, labels, rows_by_user, query_user, truth)


def make_workload(args: argparse.Namespace, n: int) -> tuple[Context, dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    x = clustered_vectors(n, args.dim, rng, args.clusters)
    src = rng.choice(n, size=args.queries, replace=False)
    noise = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries = normalize(x[src] + args.query_noise * noise)
    gen_s = time.perf_counter() - t0
    with threadpool_limits(limits=args.build_threads):
        scopes = [make_scope(x, queries, src, u, args.k, args.seed) for u in args.users]
    truth = scopes[0].truth
    sims = np.einsum("qd,qkd->qk", queries, x[truth])
    info = {
        "n": n,
        "generate_s": round(gen_s, 2),
        "ground_truth_s": round(time.perf_counter() - t0 - gen_s, 2),
        "median_cos_top1": round(float(np.median(sims[:, 0])), 3),
        "median_cos_topk": round(float(np.median(sims[:, -1])), 3),
        "median_cos_query_source": round(float(np.median(np.sum(queries * x[src], 1))), 3),
        "median_cos_random_pair": round(float(np.median(np.sum(x[:1000] * x[-1000:], 1))), 3),
    }
    kinds = rng.integers(0, len(KINDS), size=n)
    ctx = Context(
        x,
        queries,
        scopes,
        kinds,
        args.k,
        args.budget_s,
        args.build_threads,
        Path(args.tmpdir),
        args.hnsw_m,
        args.ef_search,
        args.vec_chunk_sizes,
    )
    return ctx, info


# --------------------------------------------------------------------------- measuring


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def evaluate(search: SearchFn, ctx: Context, scope: Scope) -> dict[str, Any]:
    """Time single queries until all are done or the time budget is spent."""
    for i in range(WARMUP_QUERIES):
        search(ctx.queries[i], int(scope.query_user[i]))
    lat, hits = [], 0
    start = time.perf_counter()
    for i, q in enumerate(ctx.queries):
        user = int(scope.query_user[i])
        t0 = time.perf_counter()
        ids = search(q, user)
        lat.append(time.perf_counter() - t0)
        hits += np.intersect1d(np.asarray(ids)[: ctx.k], scope.truth[i]).size
        if len(lat) >= MIN_QUERIES and time.perf_counter() - start > ctx.budget_s:
            break
    ms = np.array(lat) * 1000
    return {
        "p50_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "recall": hits / (len(lat) * ctx.k),
        "queries": len(lat),
    }


class Timer:
    """Measures wall time and RSS growth of a build step."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.rss0 = rss_mb()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.rss = rss_mb() - self.rss0


def result(
    ctx: Context, scope: Scope, method: str, params: str, timer: Timer, size: float, **kw: Any
) -> Result:
    n = ctx.x.shape[0]
    return Result(
        n,
        scope.users,
        n // scope.users,
        method,
        params,
        build_s=timer.seconds,
        size_mb=size / 2**20,
        rss_mb=timer.rss,
        **kw,
    )


def measured(
    ctx: Context,
    scope: Scope,
    method: str,
    params: str,
    timer: Timer,
    size: float,
    search: SearchFn,
    note: str = "",
) -> Result:
    with threadpool_limits(limits=1):
        stats = evaluate(search, ctx, scope)
    res = result(ctx, scope, method, params, timer, size, note=note, **stats)
    print(
        f"  {method:<34} {params:<28} users={scope.users:<5} p50={res.p50_ms:8.3f}ms "
        f"recall={res.recall:.3f} build={res.build_s:.1f}s n_q={res.queries}",
        flush=True,
    )
    return res


# --------------------------------------------------------------------------- numpy / sqlite


def family_numpy(ctx: Context) -> Iterator[Result]:
    """Exact search over an in-memory float32 matrix per user (the ground truth)."""
    for scope in ctx.scopes:
        with Timer() as timer:
            mats = [np.ascontiguousarray(ctx.x[rows]) for rows in scope.rows_by_user]
        size = sum(m.nbytes for m in mats)

        def search(q: np.ndarray, user: int, mats=mats, scope=scope) -> np.ndarray:
            return scope.rows_by_user[user][exact_topk(mats[user], q, ctx.k)]

        yield measured(ctx, scope, "numpy exact", "per-user matrix", timer, size, search)
        del mats


def connect(ctx: Context, name: str, vec: bool = True, fresh: bool = True) -> Any:
    path = ctx.tmpdir / name
    for suffix in ("", "-journal", "-wal", "-shm"):
        if fresh:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = ctx.sqlite.connect(path)
    if vec:
        import sqlite_vec

        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
    return conn


def file_size(conn: Any) -> int:
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    return page_count * conn.execute("PRAGMA page_size").fetchone()[0]


def create_blob_table(conn: Any, ctx: Context, scope: Scope) -> None:
    conn.execute(
        "CREATE TABLE memories (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, "
        "kind TEXT NOT NULL, embedding BLOB NOT NULL)"
    )
    conn.execute("CREATE INDEX memories_user ON memories (user_id)")
    rows = (
        (i + 1, f"u{scope.labels[i]}", KINDS[ctx.kinds[i]], ctx.x[i].tobytes())
        for i in range(ctx.x.shape[0])
    )
    with conn:
        conn.executemany("INSERT INTO memories VALUES (?, ?, ?, ?)", rows)


def family_sqlite_blob(ctx: Context) -> Iterator[Result]:
    """Plain table with float32 BLOBs; each query loads the user's rows and scans with numpy."""
    dim = ctx.x.shape[1]
    for scope in ctx.scopes:
        conn = connect(ctx, "blob.db", vec=False)
        with Timer() as timer:
            create_blob_table(conn, ctx, scope)

        def search(q: np.ndarray, user: int, conn=conn) -> np.ndarray:
            rows = conn.execute(
                "SELECT id, embedding FROM memories WHERE user_id = ?", (f"u{user}",)
            ).fetchall()
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            return ids[exact_topk(mat.reshape(-1, dim), q, ctx.k)] - 1

        size = file_size(conn)
        yield measured(
            ctx,
            scope,
            "sqlite BLOB + numpy scan",
            "index on user_id",
            timer,
            size,
            search,
            note="no extension; reads user's rows per query",
        )
        conn.close()


def vec_table_ddl(
    dim: int, etype: str, user_mode: str, metric: bool = True, extra: str = ""
) -> str:
    distance = " distance_metric=cosine" if metric else ""
    return (
        f"CREATE VIRTUAL TABLE vec_memories USING vec0(user_id text{user_mode}, "
        f"embedding {etype}[{dim}]{distance}, kind text{extra})"
    )


def fill_vec_table(
    conn: Any, ctx: Context, scope: Scope, encode: Callable[[np.ndarray], bytes], sql_fn: str
) -> None:
    rows = (
        (i + 1, f"u{scope.labels[i]}", KINDS[ctx.kinds[i]], encode(ctx.x[i]))
        for i in range(ctx.x.shape[0])
    )
    insert = (
        f"INSERT INTO vec_memories (rowid, user_id, kind, embedding) VALUES (?, ?, ?, {sql_fn}(?))"
    )
    with conn:
        conn.executemany(insert, rows)


def vec_search_fn(
    conn: Any, ctx: Context, sql_fn: str, encode: Callable, k: int | None = None
) -> SearchFn:
    k = k or ctx.k
    sql = (
        "SELECT rowid FROM vec_memories "
        f"WHERE embedding MATCH {sql_fn}(?) AND k = ? AND user_id = ?"
    )

    def search(q: np.ndarray, user: int) -> np.ndarray:
        rows = conn.execute(sql, (encode(q), k, f"u{user}")).fetchall()
        return np.array([r[0] - 1 for r in rows], dtype=np.int64)

    return search


def family_sqlite_vec(ctx: Context) -> Iterator[Result]:
    """vec0 float32: user_id as partition key (per chunk size) or as a metadata column."""
    dim = ctx.x.shape[1]
    for scope in ctx.scopes:
        modes = [(" partition key", size) for size in ctx.vec_chunk_sizes]
        if scope.users > 1:
            modes.append(("", ctx.vec_chunk_sizes[0]))
        for user_mode, chunk in modes:
            label = f"user_id {'partition key' if user_mode else 'metadata filter'} chunk={chunk}"
            conn = connect(ctx, "vec.db")
            with Timer() as timer:
                conn.execute(vec_table_ddl(dim, "float", user_mode, extra=f", chunk_size={chunk}"))
                fill_vec_table(conn, ctx, scope, np.ndarray.tobytes, "vec_f32")
            search = vec_search_fn(conn, ctx, "vec_f32", np.ndarray.tobytes)
            yield measured(
                ctx, scope, "sqlite-vec vec0 float32", label, timer, file_size(conn), search
            )
            conn.close()


def int8_encoder(x: np.ndarray) -> Callable[[np.ndarray], bytes]:
    scale = 127.0 / float(np.quantile(np.abs(x[:100_000]), 0.9999))

    def encode(v: np.ndarray) -> bytes:
        return np.clip(np.rint(v * scale), -127, 127).astype(np.int8).tobytes()

    return encode


def bit_encode(v: np.ndarray) -> bytes:
    return np.packbits(v > 0).tobytes()


def rerank_search_fn(conn: Any, ctx: Context, oversample: int) -> SearchFn:
    """Hamming top (k * oversample) from vec0, then exact rerank on float32 BLOBs."""
    coarse = vec_search_fn(conn, ctx, "vec_bit", bit_encode, k=ctx.k * oversample)
    dim = ctx.x.shape[1]

    def search(q: np.ndarray, user: int) -> np.ndarray:
        cand = coarse(q, user) + 1
        marks = ",".join("?" * len(cand))
        rows = conn.execute(
            f"SELECT id, embedding FROM memories WHERE id IN ({marks})", cand.tolist()
        ).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dim)
        return ids[exact_topk(mat, q, ctx.k)] - 1

    return search


def family_sqlite_vec_quant(ctx: Context) -> Iterator[Result]:
    """vec0 int8 and bit columns (partition key), unscoped only."""
    dim, scope = ctx.x.shape[1], ctx.scopes[0]
    encode8 = int8_encoder(ctx.x)
    conn = connect(ctx, "vec8.db")
    with Timer() as timer:
        conn.execute(vec_table_ddl(dim, "int8", " partition key"))
        fill_vec_table(conn, ctx, scope, encode8, "vec_int8")
    yield measured(
        ctx,
        scope,
        "sqlite-vec vec0 int8",
        "user_id partition key",
        timer,
        file_size(conn),
        vec_search_fn(conn, ctx, "vec_int8", encode8),
        note="scale from data 99.99th pct",
    )
    conn.close()
    conn = connect(ctx, "vecbit.db")
    with Timer() as timer:
        conn.execute(vec_table_ddl(dim, "bit", " partition key", metric=False))
        fill_vec_table(conn, ctx, scope, bit_encode, "vec_bit")
    size = file_size(conn)
    yield measured(
        ctx,
        scope,
        "sqlite-vec vec0 bit",
        "hamming only",
        timer,
        size,
        vec_search_fn(conn, ctx, "vec_bit", bit_encode),
    )
    with Timer() as timer2:
        create_blob_table(conn, ctx, scope)
    timer2.seconds += timer.seconds
    yield measured(
        ctx,
        scope,
        "sqlite-vec vec0 bit + rerank",
        "10x oversample, f32 BLOB",
        timer2,
        file_size(conn),
        rerank_search_fn(conn, ctx, 10),
        note="size includes the float32 BLOB table",
    )
    conn.close()


# --------------------------------------------------------------------------- ANN libraries


def hnswlib_search_fn(index: Any, ctx: Context, scope: Scope) -> SearchFn:
    user_of = scope.labels.tolist()

    def search(q: np.ndarray, user: int) -> np.ndarray:
        pred = None if scope.users == 1 else (lambda i: user_of[i] == user)
        labels, _ = index.knn_query(q, k=ctx.k, num_threads=1, filter=pred)
        return labels[0]

    return search


def family_hnswlib(ctx: Context) -> Iterator[Result]:
    """hnswlib inner-product HNSW; user scope via the Python filter callback."""
    import hnswlib

    n, dim = ctx.x.shape
    for m in ctx.hnsw_m:
        with Timer() as timer:
            index = hnswlib.Index(space="ip", dim=dim)
            index.init_index(max_elements=n, ef_construction=200, M=m)
            index.add_items(ctx.x, np.arange(n), num_threads=ctx.build_threads)
        size = index.index_file_size()
        for scope in ctx.scopes:
            search = hnswlib_search_fn(index, ctx, scope)
            note = "" if scope.users == 1 else "Python filter callback"
            for ef in ctx.ef_search:
                index.set_ef(max(ef, ctx.k))
                yield measured(
                    ctx,
                    scope,
                    "hnswlib HNSW",
                    f"M={m} efC=200 ef={ef}",
                    timer,
                    size,
                    search,
                    note=note,
                )
        del index, search


def family_usearch(ctx: Context) -> Iterator[Result]:
    """usearch HNSW with library defaults; no filtered search in the Python API."""
    from usearch.index import Index

    n, dim = ctx.x.shape
    scope = ctx.scopes[0]
    for dtype in ("f32", "i8"):
        with Timer() as timer:
            index = Index(ndim=dim, metric="cos", dtype=dtype)
            index.add(np.arange(n), ctx.x, threads=ctx.build_threads)

        def search(q: np.ndarray, user: int, index=index) -> np.ndarray:
            return index.search(q, ctx.k, threads=1).keys

        params = (
            f"{dtype} M={index.connectivity} efC={index.expansion_add} ef={index.expansion_search}"
        )
        yield measured(
            ctx,
            scope,
            "usearch HNSW",
            params,
            timer,
            index.serialized_length,
            search,
            note="unscoped only",
        )
        del index


def faiss_selectors(faiss: ModuleType, scope: Scope) -> list[Any]:
    if scope.users == 1:
        return []
    return [faiss.IDSelectorBatch(rows.astype(np.int64)) for rows in scope.rows_by_user]


def faiss_size(faiss: ModuleType, index: Any, ctx: Context) -> int:
    path = ctx.tmpdir / "faiss.index"
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    path.unlink()
    return size


def faiss_search_fn(faiss: ModuleType, index: Any, ctx: Context, sels: list, ef: int):
    def search(q: np.ndarray, user: int) -> np.ndarray:
        if ef:
            params = faiss.SearchParametersHNSW(efSearch=max(ef, ctx.k))
        else:
            params = faiss.SearchParameters()
        if sels:
            params.sel = sels[user]
        _, ids = index.search(q[None, :], ctx.k, params=params)
        return ids[0]

    return search


def family_faiss(ctx: Context, hnsw: bool) -> Iterator[Result]:
    """faiss IndexFlatIP or IndexHNSWFlat(M=32, efC=200); scope via IDSelectorBatch."""
    import faiss

    dim = ctx.x.shape[1]
    faiss.omp_set_num_threads(ctx.build_threads)
    with Timer() as timer:
        if hnsw:
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 200
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(ctx.x)
    size = faiss_size(faiss, index, ctx)
    faiss.omp_set_num_threads(1)
    name, efs = ("faiss IndexHNSWFlat", ctx.ef_search) if hnsw else ("faiss IndexFlatIP", [0])
    for scope in ctx.scopes:
        sels = faiss_selectors(faiss, scope)
        for ef in efs:
            params = f"M=32 efC=200 ef={ef}" if hnsw else "exact"
            note = "IDSelectorBatch" if sels else ""
            search = faiss_search_fn(faiss, index, ctx, sels, ef)
            yield measured(ctx, scope, name, params, timer, size, search, note=note)
    faiss.omp_set_num_threads(ctx.build_threads)
    del index


FAMILIES: dict[str, tuple[Callable[[Context], Iterator[Result]], str | None]] = {
    "numpy": (family_numpy, None),
    "sqlite-blob": (family_sqlite_blob, None),
    "sqlite-vec": (family_sqlite_vec, "sqlite_vec"),
    "sqlite-vec-quant": (family_sqlite_vec_quant, "sqlite_vec"),
    "hnswlib": (family_hnswlib, "hnswlib"),
    "usearch": (family_usearch, "usearch"),
    "faiss-flat": (lambda ctx: family_faiss(ctx, hnsw=False), "faiss"),
    "faiss-hnsw": (lambda ctx: family_faiss(ctx, hnsw=True), "faiss"),
}


# --------------------------------------------------------------------------- environment


def sqlite_module() -> tuple[ModuleType | None, str]:
    """The stdlib sqlite3 if it can load extensions, else pysqlite3 (pysqlite3-binary)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3, "stdlib sqlite3"
    try:
        return importlib.import_module("pysqlite3.dbapi2"), "pysqlite3 (stdlib lacks ext.)"
    except ImportError:
        return sqlite3, "stdlib sqlite3 WITHOUT enable_load_extension"


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(sqlite: ModuleType | None, sqlite_origin: str) -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    blas = [
        {
            "library": Path(lib["filepath"]).name,
            **{key: lib.get(key) for key in ("internal_api", "version", "architecture")},
        }
        for lib in threadpool_info()
        if lib.get("user_api") == "blas"
    ]
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": blas,
        "sqlite_module": sqlite_origin,
        "sqlite_version": sqlite.sqlite_version if sqlite else None,
        "loadavg_at_end": os.getloadavg(),
    }
    for dist in ("sqlite-vec", "hnswlib", "usearch", "faiss-cpu", "pysqlite3-binary"):
        info[dist] = version_of(dist)
    return info


def vec_version(ctx: Context) -> str | None:
    try:
        conn = connect(ctx, "version.db")
    except (ImportError, AttributeError):
        return None
    version = conn.execute("SELECT vec_version()").fetchone()[0]
    conn.close()
    return version


# --------------------------------------------------------------------------- SQLite checks

CHECK_ROWS = 2000


def open_check_db(
    ctx: Context, name: str, tables: tuple[str, ...], users: int = 1, extra: str = ""
) -> Any:
    """A small database with the BLOB table and/or a vec0 table holding CHECK_ROWS rows."""
    conn = connect(ctx, name)
    labels = np.arange(CHECK_ROWS, dtype=np.int32) % users
    scope = Scope(users, labels, [], np.zeros(0), np.zeros(0))
    small = replace(ctx, x=ctx.x[:CHECK_ROWS], scopes=[scope])
    if "blob" in tables:
        create_blob_table(conn, small, scope)
    if "vec" in tables:
        conn.execute(vec_table_ddl(ctx.x.shape[1], "float", " partition key", extra=extra))
        fill_vec_table(conn, small, scope, np.ndarray.tobytes, "vec_f32")
    return conn


def insert_rows(conn: Any, ctx: Context, rows: range) -> None:
    """Insert rows (0-based indices into ctx.x) into both tables without committing."""
    for i in rows:
        blob = ctx.x[i].tobytes()
        conn.execute("INSERT INTO memories VALUES (?, 'u0', 'fact', ?)", (i + 1, blob))
        conn.execute(
            "INSERT INTO vec_memories (rowid, user_id, kind, embedding) "
            "VALUES (?, 'u0', 'fact', ?)",
            (i + 1, blob),
        )


def snapshot(conn: Any, ctx: Context, probe: int) -> dict[str, Any]:
    """Row counts of both tables and whether a KNN search still finds the probe row."""
    hit = conn.execute(
        "SELECT rowid FROM vec_memories WHERE embedding MATCH ? AND k = 1 AND user_id = 'u0'",
        (ctx.x[probe].tobytes(),),
    ).fetchone()
    return {
        "memories": conn.execute("SELECT count(*) FROM memories").fetchone()[0],
        "vec_memories": conn.execute("SELECT count(*) FROM vec_memories").fetchone()[0],
        "probe_found_by_knn": bool(hit and hit[0] == probe + 1),
    }


def check_transactions(ctx: Context) -> dict[str, Any]:
    """Rollback, and a process killed mid-transaction, must leave both tables as committed."""
    probe = CHECK_ROWS
    conn = open_check_db(ctx, "tx.db", ("blob", "vec"))
    insert_rows(conn, ctx, range(probe, probe + 1))
    conn.rollback()
    after_rollback = snapshot(conn, ctx, probe)
    conn.close()
    pid = os.fork()
    if pid == 0:  # child: write a large transaction with a tiny cache, then die uncommitted
        child = connect(ctx, "tx.db", fresh=False)
        child.execute("PRAGMA cache_size = 5")
        insert_rows(child, ctx, range(probe, probe + 1000))
        os._exit(3)
    os.waitpid(pid, 0)
    hot_journal = Path(ctx.tmpdir / "tx.db-journal").exists()
    conn = connect(ctx, "tx.db", fresh=False)
    after_crash = snapshot(conn, ctx, probe)
    conn.close()
    return {
        "committed_rows": CHECK_ROWS,
        "after_rollback": after_rollback,
        "hot_journal_left_by_killed_writer": hot_journal,
        "after_killed_writer": after_crash,
    }


def check_hard_delete(ctx: Context, table: str, secure: bool) -> dict[str, Any]:
    """Delete 100 rows, then look for their raw float32 bytes anywhere in the database files."""
    conn = open_check_db(ctx, f"del_{table}.db", (table,))
    conn.execute(f"PRAGMA secure_delete = {'ON' if secure else 'OFF'}")
    name, key = ("memories", "id") if table == "blob" else ("vec_memories", "rowid")
    with conn:
        conn.execute(f"DELETE FROM {name} WHERE {key} BETWEEN 101 AND 200")
    conn.close()
    data = b"".join(p.read_bytes() for p in ctx.tmpdir.glob(f"del_{table}.db*") if p.is_file())
    return {
        "deleted_vectors_still_in_file": sum(in_file(ctx.x[i], data) for i in range(100, 200)),
        "kept_vectors_found (control)": sum(in_file(ctx.x[i], data) for i in range(300, 400)),
    }


def in_file(vector: np.ndarray, data: bytes, piece: int = 128) -> bool:
    """True if any 128-byte piece of the vector is in data (vectors may straddle pages)."""
    raw = vector.tobytes()
    return any(raw[i : i + piece] in data for i in range(0, len(raw), piece))


def check_partition_overhead(ctx: Context) -> dict[str, float]:
    """File size of 2,000 vectors in 1 partition vs 500 users x 4 vectors."""
    sizes = {}
    for label, users, extra in (
        ("1 user", 1, ""),
        ("500 users, default chunk_size", 500, ""),
        ("500 users, chunk_size=8", 500, ", chunk_size=8"),
    ):
        conn = open_check_db(ctx, "part.db", ("vec",), users=users, extra=extra)
        sizes[label + " (MB)"] = round(file_size(conn) / 2**20, 2)
        conn.close()
    return sizes


def check_partition_scaling(ctx: Context, rows: int = 12_000, users: int = 4_000) -> dict:
    """vec0 looks partitions up in its chunks shadow table, which has no index on the key.

    Inserts and KNN queries therefore scan every chunk of every user. Compare with an index
    created by hand on the shadow table (works, but is not a supported sqlite-vec feature).
    """
    rows = min(rows, ctx.x.shape[0])
    labels = np.arange(rows, dtype=np.int32) % users
    scope = Scope(users, labels, [], np.zeros(0), np.zeros(0))
    small = replace(ctx, x=ctx.x[:rows], scopes=[scope])
    out = {}
    for indexed in (False, True):
        conn = connect(ctx, "scaling.db")
        conn.execute(
            vec_table_ddl(ctx.x.shape[1], "float", " partition key", extra=", chunk_size=128")
        )
        if indexed:
            conn.execute(
                "CREATE INDEX vec_memories_chunks_part ON vec_memories_chunks (partition00)"
            )
        t0 = time.perf_counter()
        fill_vec_table(conn, small, scope, np.ndarray.tobytes, "vec_f32")
        insert_s = time.perf_counter() - t0
        search = vec_search_fn(conn, small, "vec_f32", np.ndarray.tobytes)
        lat = []
        for i, q in enumerate(ctx.queries[:50]):
            t0 = time.perf_counter()
            search(q, i % users)
            lat.append(time.perf_counter() - t0)
        chunks = conn.execute("SELECT count(*) FROM vec_memories_chunks").fetchone()[0]
        out["shadow index" if indexed else "as shipped"] = {
            "chunks": chunks,
            "insert_s": round(insert_s, 2),
            "query_p50_ms": round(float(np.median(lat)) * 1000, 3),
        }
        conn.close()
    return {f"{rows} rows, {users} users, chunk_size=128": out}


def sqlite_checks(ctx: Context) -> dict[str, Any]:
    return {
        "transactions": check_transactions(ctx),
        "hard_delete": {
            f"{table}, secure_delete={'ON' if secure else 'OFF'}": check_hard_delete(
                ctx, table, secure
            )
            for table in ("blob", "vec")
            for secure in (False, True)
        },
        "partition_overhead": check_partition_overhead(ctx),
        "partition_scaling": check_partition_scaling(ctx),
    }


# --------------------------------------------------------------------------- main


def available(module: str | None) -> bool:
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def run_size(
    args: argparse.Namespace, n: int, sqlite: ModuleType | None, checks: bool
) -> dict[str, Any]:
    print(f"== n={n}: generating data and ground truth", flush=True)
    load_start = os.getloadavg()
    ctx, dataset = make_workload(args, n)
    dataset["loadavg_start"] = load_start
    ctx.sqlite = sqlite
    print(f"   {dataset}", flush=True)
    results: list[Result] = []
    skipped = []
    for name in args.methods:
        family, module = FAMILIES[name]
        if not available(module) or (module == "sqlite_vec" and sqlite is None):
            skipped.append(name)
            continue
        t0 = time.perf_counter()
        results.extend(family(ctx))
        dataset[f"wall_s {name}"] = round(time.perf_counter() - t0, 1)
        gc.collect()
    if checks and n < CHECK_ROWS + 1000:
        print(f"   skipping SQLite checks: they need n >= {CHECK_ROWS + 1000}", flush=True)
    elif checks and sqlite is not None and available("sqlite_vec"):
        print("   SQLite consistency / delete / partition checks", flush=True)
        dataset["checks"] = sqlite_checks(ctx)
    dataset["vec_version"] = vec_version(ctx) if available("sqlite_vec") else None
    add_ratios(results)
    return {"dataset": dataset, "skipped": skipped, "results": results}


def add_ratios(results: list[Result]) -> None:
    exact = {(r.n, r.users): r.p50_ms for r in results if r.method == "numpy exact"}
    for r in results:
        if (r.n, r.users) in exact:
            r.p50_vs_exact = r.p50_ms / exact[(r.n, r.users)]


def markdown_table(results: list[Result]) -> str:
    head = (
        "| n | users | rows/user | method | params | build s | size MB | RSS Δ MB | p50 ms "
        "| p95 ms | p50 / exact | recall@k | queries | note |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in sorted(results, key=lambda r: (r.n, r.users)):
        lines.append(
            f"| {r.n:,} | {r.users} | {r.per_user:,} | {r.method} | {r.params} "
            f"| {r.build_s:.1f} | {r.size_mb:.0f} | {r.rss_mb:.0f} | {r.p50_ms:.2f} "
            f"| {r.p95_ms:.2f} | {r.p50_vs_exact:.2f}x | {r.recall:.3f} | {r.queries} "
            f"| {r.note} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, action="append", help="vectors (repeatable; 100000)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--users", type=int, action="append", help="user split (repeatable; 1)")
    p.add_argument("--out", type=Path, help="write JSON results here")
    p.add_argument("--methods", nargs="+", choices=ALL_METHODS, default=list(ALL_METHODS))
    p.add_argument("--hnsw-m", type=int, nargs="+", default=[16, 32])
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 128])
    p.add_argument(
        "--vec-chunk-sizes",
        type=int,
        nargs="+",
        default=[1024, 128],
        help="vec0 chunk_size values (1024 is the sqlite-vec default)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=30.0,
        help="stop timing a configuration after this long (min 10 queries)",
    )
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--query-noise", type=float, default=0.025, help="per-dimension sigma")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--tmpdir", help="scratch directory for database and index files")
    p.add_argument(
        "--no-checks",
        dest="checks",
        action="store_false",
        help="skip the SQLite rollback / crash / delete / partition checks (run once, first --n)",
    )
    args = p.parse_args(argv)
    args.n = args.n or [100_000]
    args.users = sorted(set(args.users or [1]))
    if args.users[0] != 1:
        args.users.insert(0, 1)  # unscoped ground truth is always needed
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sqlite, origin = sqlite_module()
    if sqlite is not None and not hasattr(sqlite.Connection, "enable_load_extension"):
        sqlite = None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        args.tmpdir = tmp
        runs = [run_size(args, n, sqlite, args.checks and i == 0) for i, n in enumerate(args.n)]
    results = [r for run in runs for r in run["results"]]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(sqlite, origin),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": [{**run, "results": [asdict(r) for r in run["results"]]} for run in runs],
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(markdown_table(results))
    print(json.dumps({"machine": report["machine"], "wall_s": report["wall_s"]}, indent=2))
    for run in runs:
        print(json.dumps(run["dataset"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
