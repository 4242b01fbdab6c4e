"""Reads of a SQLite store run at once, in threads, beside a writer: none waits for a write in
progress or for another read, and what they read and cache stays exactly what is stored (no
matrix row lost or appended twice by a load that raced a commit)."""

from __future__ import annotations

import random
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import snowballstemmer

from engram import HashEmbedder, Memory, NotFoundError, RecordFilter, RecordKind, SqliteStore
from engram.embed import embed_texts
from engram.store import lexical
from engram.store.sqlite import store as store_module
from engram.store.sqlite.ops import generation
from engram.store.sqlite.scoring import _blas, one_blas_thread
from engram.store.sqlite.vectors import UserMatrix, load_user_matrix

EMBEDDER = HashEmbedder(64)
WORDS = ("quartz", "lisbon", "beagle", "rust", "garden", "violin", "harbour", "pepper", "comet",
         "marble")  # fmt: skip


def sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def chat(mem: Memory, user: str, session: str, n: int, rng: random.Random) -> None:
    for i in range(n):
        mem.add(
            [{"role": ("user", "assistant")[i % 2], "content": sentence(rng)}],
            user_id=user, session_id=session,
        )  # fmt: skip


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memory]:
    m = Memory(store=SqliteStore(tmp_path / "r.db"), embedder=EMBEDDER)
    rng = random.Random(3)
    for user in ("u0", "u1", "u2"):
        for session in ("s0", "s1"):
            chat(m, user, session, 6, rng)
    yield m
    m.close()


def store_of(mem: Memory) -> SqliteStore:
    assert isinstance(mem.store, SqliteStore)
    return mem.store


def vector(text: str) -> np.ndarray:
    return embed_texts(EMBEDDER, [text])[0]


def reads(mem: Memory, user: str = "u1") -> dict[str, object]:
    """One of each read, the matrix loaded cold."""
    store = store_of(mem)
    where = RecordFilter(user, kinds=(RecordKind.TURN, RecordKind.WINDOW))
    return {
        "lexical": store.lexical_search("quartz garden", where, 10),
        "vector": store.vector_search(vector("beagle rust"), where, 10),
        "list": store.list(RecordFilter(user), limit=50),
        "search": mem.search("lisbon comet", user_id=user, limit=5),
        "stats": store.stats(user),
    }


def in_thread(work: Callable[[], object], wait: float) -> tuple[bool, list[object]]:
    """Run ``work`` in a thread; whether it finished within ``wait`` seconds, and its result."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    thread.join(wait)
    return not thread.is_alive(), out


def test_reads_do_not_wait_for_a_write_in_progress(mem: Memory) -> None:
    store = store_of(mem)
    store._matrices.clear()
    expected = reads(mem)
    store._matrices.clear()  # B loads the matrix while A holds the write lock
    holding, release = threading.Event(), threading.Event()

    def write() -> None:
        with store._tx() as conn:  # the store lock and SQLite's write lock, held open
            conn.execute("INSERT INTO meta VALUES ('scratch', 'uncommitted')")
            holding.set()
            release.wait(10)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert holding.wait(5)
        finished, out = in_thread(lambda: reads(mem), wait=3.0)
    finally:
        release.set()
        writer.join(5)
    assert finished, "a read waited for the write in progress"
    assert out == [expected]


def test_a_read_does_not_wait_for_another_read(mem: Memory) -> None:
    store = store_of(mem)
    expected = reads(mem, "u2")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._reading() as conn:  # a long read: a snapshot kept open
            conn.execute("SELECT count(*) FROM records").fetchone()
            holding.set()
            release.wait(10)

    reader = threading.Thread(target=hold, daemon=True)
    reader.start()
    try:
        assert holding.wait(5)
        finished, out = in_thread(lambda: reads(mem, "u2"), wait=3.0)
        wrote, _ = in_thread(lambda: chat(mem, "u2", "s9", 2, random.Random(1)), wait=3.0)
    finally:
        release.set()
        reader.join(5)
    assert finished and out == [expected]
    assert wrote, "a write waited for a read"


def live_rows(m: UserMatrix, store: SqliteStore) -> dict[str, np.ndarray]:
    """id -> vector of every row a search of ``m`` can return; no id twice, none missing."""
    dead = m._dead[: m.matrix.shape[0]] if m._dead is not None else np.zeros(len(m.matrix), bool)
    rows = [int(r) for r in np.flatnonzero(~dead)]
    ids = m.record_ids(store._conn, rows)
    assert None not in ids, "a row of a deleted record is still searched"
    counts = Counter(ids)
    assert max(counts.values(), default=1) == 1, f"rows twice: {counts.most_common(3)}"
    return {str(i): m.matrix[row] for i, row in zip(ids, rows, strict=True)}


def check_cache_is_what_is_stored(store: SqliteStore) -> int:
    """Every cached matrix of the current generation equals a fresh load; how many there were."""
    checked = 0
    for user, (gen, cached) in list(store._matrices._items.items()):
        if gen != generation(store._conn, user).gen:
            continue  # stale, and rebuilt by the next search: never used as it is
        fresh = load_user_matrix(store._conn, user, EMBEDDER.dim)
        got, want = live_rows(cached, store), live_rows(fresh, store)
        assert sorted(got) == sorted(want), user
        for rid, row in want.items():
            assert np.allclose(got[rid], row, atol=1e-6), rid
        checked += 1
    return checked


def write_randomly(mem: Memory, seed: int, deadline: float) -> int:
    """Adds, updates and deletes on random users until the deadline; how many were done."""
    rng, done = random.Random(seed), 0
    while time.monotonic() < deadline and done < 400:
        user, session = rng.choice(("u0", "u1", "u2")), rng.choice(("s0", "s1", f"w{seed}"))
        action = rng.random()
        if action < 0.5:
            chat(mem, user, session, 1, rng)
        else:
            turns = mem.list(user_id=user, limit=200)
            try:
                if turns and action < 0.8:
                    mem.update(rng.choice(turns).id, sentence(rng), user_id=user)
                elif turns:
                    mem.delete(rng.choice(turns).id, user_id=user)
            except NotFoundError:  # another writer deleted it meanwhile
                pass
        done += 1
    return done


def search_randomly(mem: Memory, seed: int, deadline: float) -> int:
    rng, done = random.Random(seed), 0
    store = store_of(mem)
    while time.monotonic() < deadline and done < 2000:
        user = rng.choice(("u0", "u1", "u2"))
        query = sentence(rng, 3)
        kinds = rng.choice([(), (RecordKind.TURN,), (RecordKind.SENTENCE, RecordKind.TURN)])
        where = RecordFilter(user, session_id=rng.choice((None, "s0", "s1")), kinds=kinds)
        store.vector_search(vector(query), where, 10)
        store.lexical_search(query, where, 10)
        if done % 5 == 0:
            mem.search(query, user_id=user, limit=5)
            store.stats(user)
        done += 1
    return done


@pytest.mark.parametrize("cached_users", [2, 64])
def test_searches_racing_writes_keep_every_cached_matrix_exact(
    tmp_path: Path, cached_users: int
) -> None:
    """Two users' matrices fit in the cache of 2, so searches of three users keep loading them
    while the writers commit: the loads race the writes."""
    store = SqliteStore(tmp_path / "race.db", cached_users=cached_users)
    mem = Memory(store=store, embedder=EMBEDDER)
    rng = random.Random(5)
    for user in ("u0", "u1", "u2"):
        chat(mem, user, "s0", 8, rng)
    deadline = time.monotonic() + 1.5
    with ThreadPoolExecutor(7) as pool:
        writers = [pool.submit(write_randomly, mem, seed, deadline) for seed in range(3)]
        searchers = [pool.submit(search_randomly, mem, 10 + seed, deadline) for seed in range(4)]
        done = [f.result() for f in writers], [f.result() for f in searchers]
    assert all(n > 0 for n in done[0]) and all(n > 0 for n in done[1])
    assert check_cache_is_what_is_stored(store) >= 1
    other = SqliteStore(tmp_path / "race.db")  # loads what is stored, as another process would
    for user in ("u0", "u1", "u2"):
        for query in ("quartz lisbon", "violin comet pepper"):
            where = RecordFilter(user)  # every row: ties and the last bits depend on the layout
            got = dict(store.vector_search(vector(query), where, 1000))
            want = dict(other.vector_search(vector(query), where, 1000))
            assert sorted(got) == sorted(want)
            assert np.allclose([got[i] for i in want], list(want.values()), atol=1e-6)
    assert check_cache_is_what_is_stored(store) == min(3, cached_users)
    other.close()
    mem.close()


@pytest.mark.parametrize("writes", [1, 3])
def test_writes_committed_while_a_matrix_loads_are_carried_over_once(
    mem: Memory, monkeypatch: pytest.MonkeyPatch, writes: int
) -> None:
    """The interleaving that the one read transaction exists for, made to happen: a search has
    read the user's generation and is loading the matrix when other threads commit (and carry
    the caches over). The matrix must come from the generation's snapshot, and get the new rows
    exactly once, from the writers' carry-over: none twice, none missing."""
    store = store_of(mem)
    store._matrices.clear()
    real = store_module.load_user_matrix
    added: list[str] = []

    def load_after_writes(conn: sqlite3.Connection, user_id: str, dim: int) -> UserMatrix:
        for i in range(writes):  # each a whole add in another thread: commit, then carry-over
            turn = {"role": "user", "content": f"written while loading {i}"}
            finished, out = in_thread(lambda t=turn: mem.add([t], user_id=user_id), wait=5.0)
            assert finished
            added.extend(r.id for r in out[0])  # type: ignore[attr-defined]
        return real(conn, user_id, dim)

    monkeypatch.setattr(store_module, "load_user_matrix", load_after_writes)
    store.vector_search(vector("written while loading"), RecordFilter("u1"), 5)
    monkeypatch.setattr(store_module, "load_user_matrix", real)
    cached = store._matrices.peek("u1")
    assert cached is not None and len(added) == writes
    assert set(added) <= set(live_rows(cached, store))
    assert check_cache_is_what_is_stored(store) == 1  # carried to the current generation
    hits = store.vector_search(vector("written while loading 0"), RecordFilter("u1"), 1)
    assert hits[0][0] == added[0]


QUERIES = [
    ("u0", "quartz garden"), ("u1", "beagle harbour"), ("u2", "violin"), ("u0", "comet rust"),
    ("u1", "marble pepper lisbon"), ("u2", "garden quartz beagle"),
]  # fmt: skip


def every_search(mem: Memory, user: str, query: str) -> tuple[object, ...]:
    store = store_of(mem)
    sessions = RecordFilter(user, session_id="s1", kinds=(RecordKind.TURN,))
    return (
        mem.search(query, user_id=user, limit=10),
        mem.search(query, user_id=user, limit=10, config="semantic"),
        mem.search_sessions(query, user_id=user, limit=3),
        store.vector_search(vector(query), sessions, 10),
        store.lexical_search(query, RecordFilter(user), 10),
    )


def together(start: threading.Barrier, mem: Memory, user: str, query: str) -> tuple[object, ...]:
    start.wait(5)
    return every_search(mem, user, query)


def test_concurrent_searches_equal_the_same_searches_run_one_by_one(mem: Memory) -> None:
    store = store_of(mem)
    serial = {(u, q): every_search(mem, u, q) for u, q in QUERIES}
    for _ in range(3):
        store._matrices.clear()  # cold: the threads load the matrices at once
        store._speakers.clear()
        start = threading.Barrier(8)
        jobs = [QUERIES[i % len(QUERIES)] for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            found = [f.result() for f in [pool.submit(together, start, mem, *j) for j in jobs]]
        for job, result in zip(jobs, found, strict=True):
            assert result == serial[job], job


def test_appends_racing_searches_of_one_matrix() -> None:
    """A matrix grown and changed in place by one thread while others search it: every hit
    is a row that was added, with its own score; no search sees a half-grown buffer."""
    dim, rng = 16, np.random.default_rng(4)
    vectors = rng.standard_normal((3000, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    m = UserMatrix("u", dim)
    m.append([("r0", "turn", "s", None)], vectors[:1])
    stop, errors = threading.Event(), []

    def search(seed: int) -> None:
        query = vectors[seed]
        try:
            while not stop.is_set():
                for rid, score in m.search(None, query, RecordFilter("u"), 5):  # type: ignore[arg-type]
                    assert score == pytest.approx(float(vectors[int(rid[1:])] @ query), abs=1e-5)
        except Exception as exc:  # the test reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=search, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 2994, 7):
            m.append([(f"r{j}", "turn", "s", None) for j in range(i, i + 7)], vectors[i : i + 7])
            m.remove([], [f"r{i}"])
            m.replace([(-1, f"r{i + 1}")], vectors[i + 1 : i + 2])  # (the same vector again)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert errors == []
    removed = set(range(1, 2994, 7))
    scores = vectors[:2994] @ vectors[8]
    want = [f"r{i}" for i in np.argsort(-scores) if i not in removed][:3]
    assert [rid for rid, _ in m.search(None, vectors[8], RecordFilter("u"), 3)] == want  # type: ignore[arg-type]


def test_products_in_several_threads_run_on_one_blas_thread_and_put_it_back() -> None:
    """The BLAS limit is process-wide: products in threads at once must neither run with the
    limit lifted by another thread's exit nor leave it changed."""
    before = [lib["num_threads"] for lib in _blas().info()]
    seen: list[int] = []
    start = threading.Barrier(4)

    def products() -> None:
        start.wait(5)
        for _ in range(25):
            with one_blas_thread():
                seen.extend(lib["num_threads"] for lib in _blas().info())

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(products) for _ in range(4)]:
            future.result()
    assert set(seen) == {1}
    assert [lib["num_threads"] for lib in _blas().info()] == before


def test_a_delete_beside_running_searches_leaves_no_text_in_the_files(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    mem = Memory(store=SqliteStore(path), embedder=EMBEDDER)
    chat(mem, "other", "s", 10, random.Random(2))
    [secret] = mem.add([{"role": "user", "content": "zebracorn passphrase 4711"}], user_id="u")
    deadline = time.monotonic() + 1.0
    with ThreadPoolExecutor(3) as pool:
        searches = [pool.submit(search_randomly, mem, s, deadline) for s in range(2)]
        time.sleep(0.2)
        mem.delete(secret.id, user_id="u")  # the log's truncation waits for the reads in flight
        data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("e.db"))
        assert b"zebracorn" not in data
        assert all(f.result() > 0 for f in searches)
    mem.close()


def test_close_closes_every_read_connection(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    mem = Memory(store=SqliteStore(path), embedder=EMBEDDER)
    chat(mem, "u", "s", 4, random.Random(1))
    store = store_of(mem)
    together = threading.Barrier(4)

    def read() -> None:
        with store._reading() as conn:
            conn.execute("SELECT count(*) FROM records").fetchone()
            together.wait(5)  # four reads at once: four connections

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(read) for _ in range(4)]:
            future.result()
    assert store._readers is not None and len(store._readers) == 4
    mem.search("quartz", user_id="u")  # an idle connection is used again
    assert len(store._readers) == 4
    mem.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.db"]  # the last one removed the log


@pytest.mark.parametrize("where", ["memory", "read-only"])
def test_threads_searching_an_in_memory_or_read_only_store(tmp_path: Path, where: str) -> None:
    """ ":memory:" has one connection (reads take the lock); a read-only file has readers."""
    if where == "memory":
        mem = Memory(store=SqliteStore(":memory:"), embedder=EMBEDDER)
    else:
        build = Memory(store=SqliteStore(tmp_path / "ro.db"), embedder=EMBEDDER)
        for user in ("u0", "u1", "u2"):
            chat(build, user, "s0", 6, random.Random(user))
        build.close()
        mem = Memory(store=SqliteStore(tmp_path / "ro.db", read_only=True), embedder=EMBEDDER)
    if where == "memory":
        for user in ("u0", "u1", "u2"):
            chat(mem, user, "s0", 6, random.Random(user))
    serial = {(u, q): every_search(mem, u, q) for u, q in QUERIES}
    store_of(mem)._matrices.clear()
    with ThreadPoolExecutor(6) as pool:
        found = list(pool.map(lambda job: every_search(mem, *job), QUERIES * 2))
    assert found == [serial[job] for job in QUERIES * 2]
    mem.close()


def stem_all(start: threading.Barrier, words: list[str]) -> dict[str, str]:
    start.wait(5)
    return {w: lexical.stem(w) for w in words}


def test_threads_stemming_at_once_get_the_stems_of_one_thread() -> None:
    """The snowball stemmer keeps the word it works on in itself; shared by threads without a
    lock, it gave wrong stems (then cached for good) and IndexErrors."""
    words = [
        stem + suffix
        for stem in ("connect", "generaliz", "happi", "nation", "relat", "condition", "agre")
        for suffix in ("", "s", "ing", "ed", "ation", "ational", "ness", "fulness", "ously")
    ]
    want = {w: snowballstemmer.stemmer("porter").stemWord(w) for w in words}
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between any two steps of a stemming
    try:
        for _ in range(5):
            lexical.stem.cache_clear()
            start = threading.Barrier(6)
            with ThreadPoolExecutor(6) as pool:
                jobs = [pool.submit(stem_all, start, words[i::6] + words) for i in range(6)]
                for job in jobs:
                    assert job.result() == want
    finally:
        sys.setswitchinterval(before)
        lexical.stem.cache_clear()
