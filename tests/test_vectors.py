"""Loading a user's vector matrix from SQLite, and searching it, against a plain reference: the
records joined to their vectors row by row (what the store did before)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from engram import RecordFilter, RecordKind, SqliteStore, StoreError
from engram.store.sqlite import vectors
from engram.store.sqlite.vectors import UserMatrix, load_user_matrix, top_k
from engram.types import MemoryRecord

DIM = 16
T0 = datetime(2024, 3, 1, tzinfo=UTC)
KINDS = (RecordKind.TURN, RecordKind.ROUND, RecordKind.WINDOW, RecordKind.SENTENCE)


def rec(i: int, user: str, session: str, agent: str | None, kind: RecordKind) -> MemoryRecord:
    return MemoryRecord(
        id=f"{user}-{i}", kind=kind, text=f"text {i}", user_id=user, session_id=session,
        agent_id=agent, role="user", name=None, seq=i, timestamp=T0, created_at=T0,
    )  # fmt: skip


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    """Two users whose records interleave (so one user's rowids have gaps), several kinds,
    sessions and agents, written in a few batches."""
    s = SqliteStore(tmp_path / "v.db")
    s.bind_embedder("test", DIM)
    rng = np.random.default_rng(7)
    for batch in range(5):
        records = [
            rec(100 * batch + i, ("u1", "u2")[i % 2], f"s{i % 3}", (None, "a1", "a2")[i % 4 % 3],
                KINDS[i % len(KINDS)])
            for i in range(23)
        ]  # fmt: skip
        s.add(records, unit(rng, len(records)))
    yield s
    s.close()


def reference(conn: sqlite3.Connection, user: str) -> tuple[list[tuple[str, ...]], np.ndarray]:
    rows = conn.execute(
        "SELECT r.id, r.kind, r.session_id, r.agent_id, v.vector FROM vectors v "
        "JOIN records r ON r.rowid = v.rowid WHERE v.user_id = ? ORDER BY v.rowid",
        (user,),
    ).fetchall()
    matrix = np.array([np.frombuffer(r[4], dtype=np.float32) for r in rows]).reshape(-1, DIM)
    return [r[:4] for r in rows], matrix


def expected_mask(rows: list[tuple[str, ...]], where: RecordFilter) -> np.ndarray:
    kinds = {k.value for k in where.kinds}
    return np.array([
        (not kinds or kind in kinds)
        and where.session_id in (None, session)
        and where.agent_id in (None, agent)
        for _, kind, session, agent in rows
    ], dtype=bool)  # fmt: skip


FILTERS = [
    RecordFilter("u1"),
    RecordFilter("u1", kinds=(RecordKind.TURN, RecordKind.ROUND, RecordKind.WINDOW)),
    RecordFilter("u1", kinds=(RecordKind.SENTENCE, RecordKind.TURN), session_id="s1"),
    RecordFilter("u1", agent_id="a1"),
    RecordFilter("u1", session_id="s2", agent_id="a2", kinds=(RecordKind.ROUND,)),
    RecordFilter("u1", session_id="nowhere"),
    RecordFilter("u1", kinds=(RecordKind.FACT,)),
]


@pytest.mark.parametrize("chunk", [1, 7, 1024])
@pytest.mark.parametrize("concatenated", [True, False])
@pytest.mark.parametrize("threaded", [True, False])
def test_load_matches_the_joined_rows(
    store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
    concatenated: bool,
    threaded: bool,
) -> None:
    monkeypatch.setattr(vectors, "_CHUNK", chunk)
    monkeypatch.setattr(vectors, "_THREADED", 0 if threaded else 1 << 40)
    monkeypatch.setattr(vectors, "_MAPPED", 0 if threaded else 1 << 40)  # mapped buffers too
    if not concatenated:
        monkeypatch.setattr(vectors, "_read_concatenated", vectors._read_rows)
    conn = store._conn
    rows, matrix = reference(conn, "u1")
    m = load_user_matrix(conn, "u1", DIM)
    assert m.loaded == len(rows) == 60 and np.array_equal(m.matrix, matrix)
    assert m.record_ids(conn, range(len(rows))) == [r[0] for r in rows]
    for where in FILTERS:
        kinds = tuple(k.value for k in where.kinds)
        keep = m.mask(conn, kinds, where.session_id, where.agent_id)
        want = expected_mask(rows, where)
        assert np.array_equal(want, keep if keep is not None else np.ones(len(rows), bool))
    assert not conn.in_transaction


@pytest.mark.parametrize("where", FILTERS)
def test_search_matches_a_brute_force_ranking(store: SqliteStore, where: RecordFilter) -> None:
    rows, matrix = reference(store._conn, "u1")
    query = unit(np.random.default_rng(1), 1)[0]
    scores = matrix @ query
    keep = expected_mask(rows, where)
    want = [(rows[i][0], float(scores[i])) for i in np.argsort(-scores) if keep[i]][:10]
    m = load_user_matrix(store._conn, "u1", DIM)
    for found in (m.search(store._conn, query, where, 10), store.vector_search(query, where, 10)):
        assert [rid for rid, _ in found] == [rid for rid, _ in want]
        assert [score for _, score in found] == pytest.approx([score for _, score in want])


@pytest.mark.parametrize("mapped", [True, False])
def test_appending_after_a_load(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    monkeypatch.setattr(vectors, "_MAPPED", 0 if mapped else 1 << 40)
    conn = store._conn
    rows, matrix = reference(conn, "u1")
    m = load_user_matrix(conn, "u1", DIM)
    turns = ("turn",)
    before = m.mask(conn, turns, None, None)  # kinds read and a mask cached before the append
    extra = unit(np.random.default_rng(2), 90)  # more than the spare rows: the buffer grows
    added = [(f"new-{i}", ("turn", "sentence")[i % 2], "s9", "a9" if i < 3 else None)
             for i in range(90)]  # fmt: skip
    assert m.append(added, extra) is m
    assert np.array_equal(m.matrix, np.vstack([matrix, extra]))
    kept = m.mask(conn, turns, None, None)
    assert kept is not None and before is not None
    assert np.array_equal(kept, np.concatenate([before, [i % 2 == 0 for i in range(90)]]))
    in_s9 = m.mask(conn, (), "s9", None)  # sessions read after the append
    assert in_s9 is not None and in_s9.sum() == 90 and not in_s9[: len(rows)].any()
    by_a9 = m.mask(conn, turns, None, "a9")
    assert by_a9 is not None and list(np.flatnonzero(by_a9)) == [len(rows), len(rows) + 2]
    hits = m.search(conn, extra[3], RecordFilter("u1", session_id="s9"), 1)
    assert hits == [("new-3", pytest.approx(1.0))]  # appended ids need no database
    assert m.record_ids(conn, [0, len(rows) + 89]) == [rows[0][0], "new-89"]


@pytest.mark.parametrize("mapped", [True, False])
def test_an_empty_user(monkeypatch: pytest.MonkeyPatch, mapped: bool) -> None:
    monkeypatch.setattr(vectors, "_MAPPED", 0 if mapped else 1 << 40)
    s = SqliteStore(":memory:")
    m = load_user_matrix(s._conn, "nobody", 0)  # no embedder bound yet: no dimension
    assert m.matrix.shape == (0, 0)
    assert m.search(s._conn, np.ones(DIM, np.float32), RecordFilter("nobody"), 5) == []
    m.append([("x", "turn", "s1", None)], np.eye(1, DIM, dtype=np.float32))
    where = RecordFilter("nobody", kinds=(RecordKind.TURN,), session_id="s1")
    assert m.search(s._conn, np.eye(1, DIM, dtype=np.float32)[0], where, 5) == [("x", 1.0)]
    assert top_k(np.zeros(0, np.float32), 3) == []


def test_records_deleted_by_another_connection_are_skipped(
    store: SqliteStore, tmp_path: Path
) -> None:
    m = load_user_matrix(store._conn, "u1", DIM)
    rows, matrix = reference(store._conn, "u1")
    other = sqlite3.connect(tmp_path / "v.db")
    with other:
        other.execute("DELETE FROM records WHERE id = ?", (rows[0][0],))
    other.close()
    assert m.record_ids(store._conn, [0, 1]) == [None, rows[1][0]]
    second = int(np.argsort(-(matrix @ matrix[0]))[1])  # the best is row 0 itself, now gone
    hits = m.search(store._conn, matrix[0], RecordFilter("u1"), 2)
    assert [rid for rid, _ in hits] == [rows[second][0]]


def test_a_vector_of_the_wrong_size_is_an_error(store: SqliteStore) -> None:
    with store._conn:
        store._conn.execute("UPDATE vectors SET vector = zeroblob(8) WHERE user_id = 'u2'")
    with pytest.raises(StoreError, match="not 16-dimensional"):
        load_user_matrix(store._conn, "u2", DIM)
    assert not store._conn.in_transaction
    assert load_user_matrix(store._conn, "u1", DIM).loaded == 60


def test_a_failure_while_filling_in_the_background_is_raised(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "_CHUNK", 5)
    monkeypatch.setattr(vectors, "_THREADED", 0)
    fill = UserMatrix._fill
    calls: list[int] = []

    def failing(self: UserMatrix, rowids: np.ndarray, vecs: np.ndarray) -> None:
        calls.append(len(rowids))
        if len(calls) == 2:
            raise StoreError("disk on fire")
        fill(self, rowids, vecs)

    monkeypatch.setattr(UserMatrix, "_fill", failing)
    with pytest.raises(StoreError, match="disk on fire"):
        load_user_matrix(store._conn, "u1", DIM)
    assert len(calls) == 2 and not store._conn.in_transaction  # the rest read, not copied


def test_a_matrix_of_another_dimension_cannot_be_appended_to() -> None:
    m = UserMatrix("u", DIM)
    m.append([("a", "turn", None, None)], np.ones((1, DIM), np.float32))
    with pytest.raises(ValueError, match="dimension"):
        m.append([("b", "turn", None, None)], np.ones((1, DIM + 1), np.float32))


def test_writes_and_deletes_carry_the_matrix_across_other_users_writes(tmp_path: Path) -> None:
    """Generations come from one store-wide clock: user a's matrix is carried over a's own
    writes and deletes even when user b wrote in between (no reload of every vector), and the
    rows of deleted records are never returned again."""
    rng = np.random.default_rng(5)
    s = SqliteStore(tmp_path / "c.db")
    s.bind_embedder("test", DIM)
    base = unit(rng, 6)
    s.add([rec(i, "a", "s1" if i < 3 else "s2", None, RecordKind.TURN) for i in range(6)], base)
    assert s.vector_search(base[0], RecordFilter("a"), 1)[0][0] == "a-0"
    loaded = s._matrices.peek("a")
    s.add([rec(0, "b", "s1", None, RecordKind.TURN)], unit(rng, 1))  # the clock moves on
    extra = unit(rng, 1)
    s.add([rec(9, "a", "s1", None, RecordKind.TURN)], extra)  # appended in place
    s.delete("a", "a-1")  # a loaded row
    s.delete("a", "a-9")  # an appended row
    s.add([rec(1, "b", "s1", None, RecordKind.TURN)], unit(rng, 1))
    s.forget("a", session_id="s2")
    hits = {rid for rid, _ in s.vector_search(base[1], RecordFilter("a"), 10)}
    assert hits == {"a-0", "a-2"}
    assert s._matrices.peek("a") is loaded  # never reloaded
    assert {rid for rid, _ in s.vector_search(extra[0], RecordFilter("a"), 1)} <= {"a-0", "a-2"}
    other = SqliteStore(tmp_path / "c.db")  # another process loads what is stored
    assert {rid for rid, _ in other.vector_search(base[1], RecordFilter("a"), 10)} == hits
    other.close()
    s.close()


def test_update_carries_the_matrix(tmp_path: Path) -> None:
    """An update replaces vectors in place, drops and adds keys, without a reload."""
    rng = np.random.default_rng(9)
    s = SqliteStore(tmp_path / "u.db")
    s.bind_embedder("test", DIM)
    base = unit(rng, 4)
    s.add([rec(i, "a", "s1", None, RecordKind.TURN) for i in range(3)], base[:3])
    s.add([rec(3, "a", "s1", None, RecordKind.SENTENCE)], base[3:])
    assert s.vector_search(base[0], RecordFilter("a"), 1)[0][0] == "a-0"
    loaded = s._matrices.peek("a")
    s.add([rec(4, "a", "s1", None, RecordKind.TURN)], unit(rng, 1))  # an appended row
    fresh = unit(rng, 3)
    s.update(
        "a", [("a-1", "new text"), ("a-4", "newer")], fresh[:2],
        drop=["a-3"], add=[rec(5, "a", "s1", None, RecordKind.SENTENCE)], add_vectors=fresh[2:],
    )  # fmt: skip
    assert s._matrices.peek("a") is loaded
    for i, rid in enumerate(["a-1", "a-4", "a-5"]):
        assert s.vector_search(fresh[i], RecordFilter("a"), 1)[0][0] == rid
    assert "a-3" not in {rid for rid, _ in s.vector_search(base[3], RecordFilter("a"), 10)}
    other = SqliteStore(tmp_path / "u.db")
    for query in (*fresh, base[0], base[3]):
        want = other.vector_search(query, RecordFilter("a"), 10)
        got = s.vector_search(query, RecordFilter("a"), 10)
        assert [r for r, _ in got] == [r for r, _ in want]
        assert np.allclose([x for _, x in got], [x for _, x in want])
    other.close()
    s.close()
