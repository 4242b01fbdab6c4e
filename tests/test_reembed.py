"""Re-indexing a store with another embedder: ``Store.replace_vectors`` on every backend,
``Memory.reembed`` (the write pipeline's vector rules, writes racing the re-index, other
processes refused afterwards) and ``engram reembed``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import StoreFactory
from engram import (
    ConfigurationError,
    ConflictError,
    HashEmbedder,
    Memory,
    RecordFilter,
    RecordKind,
    SqliteStore,
    Store,
)
from engram.cli.main import main
from engram.embed.base import Vectors, embed_texts, normalise_rows
from engram.store.base import text_digest
from test_store_contract import DIM, rec, vec

NEW = 4


def _every_id(store: Store, users: Sequence[str] = ("u1", "u2")) -> list[str]:
    return [r.id for u in users for r in store.list(RecordFilter(u), limit=1000)]


def _digests(store: Store, ids: Sequence[str]) -> list[int]:
    """The text digest of each of ``ids`` as stored (0: no such record)."""
    texts = {r.id: r.text for u in ("u1", "u2") for r in store.list(RecordFilter(u), limit=1000)}
    return [text_digest(texts[i]) if i in texts else 0 for i in ids]


def _new_vectors(n: int) -> Vectors:
    rng = np.random.default_rng(5)
    return normalise_rows(rng.standard_normal((n, NEW)).astype(np.float32))


@pytest.fixture
def filled(store: Store) -> Store:
    store.bind_embedder("old", DIM)
    store.add(
        [rec("a", "the quick brown fox"), rec("b", "a lazy dog", seq=1),
         rec("r", "fox\ndog", kind=RecordKind.ROUND, provenance=("a", "b")),
         rec("x", "user two's fox", user="u2")],
        vec(0, 1, 2, 3),
    )  # fmt: skip
    return store


def test_replace_vectors_swaps_every_vector_and_the_binding(filled: Store) -> None:
    ids = _every_id(filled)
    new = _new_vectors(len(ids))
    assert filled.replace_vectors("new", NEW, ids, new, _digests(filled, ids)) == []
    for user in ("u1", "u2"):
        mine = [i for i in ids if i in _every_id(filled, (user,))]
        got = filled.get_vectors(user, mine)
        assert np.allclose(got, new[[ids.index(i) for i in mine]], atol=1e-6)
    hits = filled.vector_search(new[ids.index("b")], RecordFilter("u1"), 1)
    assert hits[0][0] == "b" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    filled.bind_embedder("new", NEW)  # the new binding is recorded
    with pytest.raises(ConfigurationError, match="4-dimensional"):
        filled.bind_embedder("old", DIM)
    assert filled.stats().dim == NEW


def test_replace_vectors_writes_nothing_when_a_record_has_no_vector(filled: Store) -> None:
    ids = [i for i in _every_id(filled) if i != "x"] + ["gone"]  # an unknown id is ignored
    before = filled.get_vectors("u1", ["a", "b"])
    digests = _digests(filled, ids)
    assert filled.replace_vectors("new", NEW, ids, _new_vectors(len(ids)), digests) == [("u2", "x")]
    digests[ids.index("b")] = text_digest("what b said before an update")
    ids.append("x")
    digests.append(_digests(filled, ["x"])[0])
    stale = filled.replace_vectors("new", NEW, ids, _new_vectors(len(ids)), digests)
    assert stale == [("u1", "b")]  # its vector was made from another text
    assert np.array_equal(filled.get_vectors("u1", ["a", "b"]), before)
    filled.bind_embedder("old", DIM)  # still bound to the old embedder
    assert [i for i, _ in filled.vector_search(vec(1)[0], RecordFilter("u1"), 1)] == ["b"]


def test_other_store_objects_are_refused_after_a_reindex(
    store_factory: StoreFactory, request: pytest.FixtureRequest
) -> None:
    if "memory" in request.node.callspec.id:
        pytest.skip("':memory:' is one store object's database")
    first, second = store_factory(), store_factory()
    try:
        for s in (first, second):
            s.bind_embedder("old", DIM)
        first.add([rec("a", "a fox"), rec("b", "a dog", seq=1)], vec(0, 1))
        assert second.vector_search(vec(0)[0], RecordFilter("u1"), 1)[0][0] == "a"
        ids = _every_id(first, ("u1",))
        new = _new_vectors(len(ids))
        assert first.replace_vectors("new", NEW, ids, new, _digests(first, ids)) == []
        with pytest.raises(ConfigurationError, match="re-indexed with embedder 'new'"):
            second.add([rec("c", "a cat", seq=2)], vec(2))
        assert [r.id for r in first.list(RecordFilter("u1"), limit=10)] == ["a", "b"]
        with pytest.raises(ConfigurationError, match="re-indexed"):
            second.vector_search(vec(0)[0], RecordFilter("u1"), 1)
        first.add([rec("c", "a cat", seq=2)], _new_vectors(1))  # the re-indexer writes on
        ids = _every_id(second, ("u1",))  # a stale object may re-index: it replaces everything
        newer = normalise_rows(np.ones((len(ids), 2), dtype=np.float32))
        assert second.replace_vectors("newer", 2, ids, newer, _digests(second, ids)) == []
        with pytest.raises(ConfigurationError, match="'newer'"):
            first.add([rec("d", "a bird", seq=3)], _new_vectors(1))
        assert second.delete("u1", "b") == ["b"]  # erasure never waits for a restart
        assert second.forget("u1") == 2  # a and c
    finally:
        first.close()
        second.close()


def _conversation(mem: Memory, user: str, n: int, prefix: str = "s") -> None:
    for s in range(n):
        mem.add(
            [{"role": "user", "content": f"I went hiking on trail {s}. It rained a lot there."},
             {"role": "assistant", "content": f"Trail {s} sounds wet. Did you bring a coat?"}],
            user_id=user, session_id=f"{prefix}{s}",
        )  # fmt: skip


def test_memory_reembed_follows_the_write_pipeline_rules(tmp_path: Path) -> None:
    mem = Memory(store=SqliteStore(tmp_path / "m.db"), embedder=HashEmbedder(DIM))
    for user in ("u1", "u2"):
        _conversation(mem, user, 3)
    before = mem.search("hiking trail 1", user_id="u1", limit=3)
    new = HashEmbedder(16)
    seen: list[tuple[int, int]] = []
    report = mem.reembed(new, progress=lambda done, total: seen.append((done, total)))
    records = [r for u in ("u1", "u2") for r in mem.store.list(RecordFilter(u), limit=1000)]
    assert report.records == len(records) and report.passes == 1 and report.dim == 16
    assert report.texts == sum(r.kind not in (RecordKind.ROUND, RecordKind.WINDOW) for r in records)
    assert seen[-1] == (len(records), len(records))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    for user in ("u1", "u2"):
        mine = [r for r in records if r.user_id == user]
        stored = mem.store.get_vectors(user, [r.id for r in mine])
        got = dict(zip([r.id for r in mine], stored, strict=True))
        for r in mine:
            if r.kind in (RecordKind.ROUND, RecordKind.WINDOW):
                want = normalise_rows(np.mean([got[t] for t in r.provenance], axis=0)[None])[0]
            else:
                want = embed_texts(new, [r.key_text])[0]
            assert np.allclose(got[r.id], want, atol=1e-6), r.kind
    after = mem.search("hiking trail 1", user_id="u1", limit=3)
    assert after[0].record.text == before[0].record.text  # the same memory, new vectors
    _conversation(mem, "u1", 4)  # the Memory embeds with the new model from now on
    mem.close()
    with pytest.raises(ConfigurationError, match="hash-16"):
        Memory.open(tmp_path / "m.db", embedder=HashEmbedder(DIM)).search("x", user_id="u1")
    with Memory.open(tmp_path / "m.db", embedder=new) as again:
        assert again.search("hiking trail 3", user_id="u1", limit=1)


class _Racing(HashEmbedder):
    """A new model whose first batch lets another writer (with the old model) add a session
    while the re-index runs."""

    def __init__(self, dim: int, write: Callable[[], None]) -> None:
        super().__init__(dim)
        self.write: Callable[[], None] | None = write

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if self.write is not None:
            write, self.write = self.write, None
            thread = threading.Thread(target=write)  # another thread: the store is not locked
            thread.start()
            thread.join()
        return super().embed_batch(texts)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Memory, Memory]]:
    """A memory to re-index, and another one on the same file (another process's), both on
    the old model."""
    path = tmp_path / "m.db"
    mem = Memory(store=SqliteStore(path), embedder=HashEmbedder(DIM))
    other = Memory(store=SqliteStore(path), embedder=HashEmbedder(DIM))
    yield mem, other
    other.close()
    mem.close()


def test_writes_during_a_reembed_are_reindexed_too(pair: tuple[Memory, Memory]) -> None:
    mem, other = pair
    _conversation(mem, "u1", 2)
    # while u1's records are embedded: more of u1 (read already) and a new user u2 (read next)
    racing = _Racing(
        16, lambda: (_conversation(other, "u1", 2, prefix="late"), _conversation(other, "u2", 2))
    )
    report = mem.reembed(racing)
    assert report.passes == 2  # u1's late sessions were missing from the first swap
    assert report.records == len(_every_id(mem.store))
    for user, session in (("u1", "late1"), ("u2", "s1")):
        hits = mem.search("trail 1 rained", user_id=user, limit=1, session_id=session)
        assert hits and "trail 1" in hits[0].record.text
    with pytest.raises(ConfigurationError, match="re-indexed"):
        _conversation(other, "u2", 3)


def test_an_update_during_a_reembed_is_embedded_again(pair: tuple[Memory, Memory]) -> None:
    mem, other = pair
    _conversation(mem, "u1", 2)
    turn = mem.list(user_id="u1", session_id="s1")[0]
    new = HashEmbedder(16)
    racing = _Racing(16, lambda: other.update(turn.id, "I went sailing instead.", user_id="u1"))
    report = mem.reembed(racing)
    assert report.passes == 2  # the turn, and the keys built from it, were embedded again
    [vector] = mem.store.get_vectors("u1", [turn.id])
    assert np.allclose(vector, embed_texts(new, ["I went sailing instead."])[0], atol=1e-6)
    assert mem.search("sailing", user_id="u1", limit=1)[0].record.id == turn.id


def test_reembed_gives_up_when_writes_never_stop(pair: tuple[Memory, Memory]) -> None:
    mem, other = pair
    _conversation(mem, "u1", 1)
    sessions = iter(range(100, 200))

    class Busy(HashEmbedder):
        def embed_batch(self, texts: Sequence[str]) -> Vectors:
            n = next(sessions)
            note = [{"role": "user", "content": f"note {n}"}]
            thread = threading.Thread(
                target=lambda: other.add(note, user_id="u1", session_id=f"b{n}")
            )
            thread.start()
            thread.join()
            return super().embed_batch(texts)

    with pytest.raises(ConflictError, match="kept being written"):
        mem.reembed(Busy(16))
    assert mem.stats().dim == DIM  # nothing changed
    assert mem.search("note", user_id="u1", limit=1)


def test_reembed_on_postgres_rebuilds_the_vector_index(pg_url: str) -> None:
    from engram.store.postgres import PostgresStore
    from engram.store.postgres.hnsw import index_name

    store = PostgresStore(pg_url, exact_below=10)
    mem = Memory(store=store, embedder=HashEmbedder(DIM))
    _conversation(mem, "u1", 3)

    def indexes() -> list[tuple[str, Any]]:
        import psycopg

        with psycopg.connect(pg_url) as conn:
            return conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE indexname = %s",
                (index_name("u1"),),
            ).fetchall()

    assert "halfvec(8)" in indexes()[0][1]
    report = mem.reembed(HashEmbedder(16))
    assert report.passes == 1
    assert "halfvec(16)" in indexes()[0][1]  # built again for the new dimension
    hits = mem.search("trail 2 rained", user_id="u1", limit=1)
    assert hits and "trail 2" in hits[0].record.text
    mem.close()


def test_engram_reembed_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "cli.db")
    for text in ("I adopted a dog named Rex. He loves the park.", "Rex is three years old."):
        assert main(["--db", db, "--embedder", "hash", "add", "--user", "u1",
                     "--content", text]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["--db", db, "reembed", "--to", "hash:32"]) == 0
    out, err = capsys.readouterr()
    assert '"embedder": "hash-32"' in out and '"passes": 1' in out
    assert "records" in err.splitlines()[-1]  # progress lines
    assert main(["--db", db, "--embedder", "hash", "search", "--user", "u1", "dog"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("engram: error: ") and "32-dimensional" in err
    assert main(["--db", db, "--embedder", "hash:32", "search", "--user", "u1", "dog"]) == 0
    assert main(["--db", db, "reembed", "--to", "nonsense:x"]) == 1
    assert capsys.readouterr().err.startswith("engram: error: ")
