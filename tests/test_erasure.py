"""Hard delete and forget leave nothing readable behind: not in any table, not in the database
file, not in its write-ahead log — checked while the store is still open, as an attacker who
copies the files would find them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engram import HashEmbedder, Memory, SqliteStore

SECRET = "zebracorn passphrase 4711"


def files_of(path: Path) -> bytes:
    """Every file of the database as it is on disk now (the store still open)."""
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


def table_values(mem: Memory) -> list[str]:
    """Every value of every row of every table, as text."""
    conn = mem.store._conn  # type: ignore[attr-defined]
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return [
        str(value)
        for table in tables
        for row in conn.execute(f'SELECT * FROM "{table}"')
        for value in row
    ]


def chat(mem: Memory, user: str = "u", session: str = "s", secret: str = SECRET) -> list[str]:
    turns = mem.add(
        [
            {"role": "user", "content": f"my pin is {secret}", "id": "msg-secret-id",
             "metadata": {"card": "meta-secret-9931"}},
            {"role": "assistant", "content": "ok noted, I will remember it."},
            {"role": "user", "content": "what is the weather like today in Porto?"},
        ],
        user_id=user,
        session_id=session,
    )  # fmt: skip
    return [t.id for t in turns]


def test_forget_session_removes_the_history_of_records_deleted_before(tmp_path: Path) -> None:
    """The reproducer of issue 8: the round key deleted with the assistant turn kept the user
    turn's text in its history row, and forget(session) left it."""
    mem = Memory(store=SqliteStore(tmp_path / "m.db"), embedder=HashEmbedder())
    ids = chat(mem)
    chat(mem, session="other", secret="something else")
    mem.delete(ids[1], user_id="u")
    mem.forget(user_id="u", session_id="s")
    assert not any("zebracorn" in v for v in table_values(mem))
    assert any("something else" in v for v in table_values(mem))
    conn = mem.store._conn  # type: ignore[attr-defined]
    sessions = {r[0] for r in conn.execute("SELECT session_id FROM history WHERE user_id = 'u'")}
    assert sessions == {"other"}
    mem.close()


def test_delete_leaves_no_text_metadata_id_or_vector_in_any_file(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    mem = Memory(store=SqliteStore(path), embedder=HashEmbedder())
    for i in range(30):  # other data around it, in other pages
        mem.add([{"role": "user", "content": f"filler turn number {i} about gardens"}], user_id="u")
    ids = chat(mem)
    vector = mem.store.get_vectors("u", [ids[0]])[0].astype(np.float32).tobytes()
    assert SECRET.encode() in files_of(path)
    mem.delete(ids[0], user_id="u")
    data = files_of(path)
    for secret in (SECRET.encode(), b"meta-secret-9931", b"msg-secret-id", b"zebracorn", vector):
        assert secret not in data
    events = mem.history(ids[0], user_id="u")
    assert [e.event for e in events] == ["ADD", "DELETE"]
    assert all(e.old_text is None and e.new_text is None for e in events)
    assert len(mem.list(user_id="u", limit=100)) == 32  # the rest is intact
    mem.close()


def test_forget_user_leaves_nothing_that_names_the_user(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    mem = Memory(store=SqliteStore(path), embedder=HashEmbedder())
    user = "user-qx31337"
    chat(mem, user=user)
    chat(mem, user=user, session="s2")
    chat(mem, user="someone-else")
    mem.search("pin", user_id=user)
    mem.forget(user_id=user)
    assert not any(user in value for value in table_values(mem))
    assert user.encode() not in files_of(path)
    assert mem.list(user_id="someone-else", limit=10)  # another user's data stays
    mem.close()


def test_forget_then_write_again_is_seen_by_another_process_cache(tmp_path: Path) -> None:
    """Generations come from one store-wide clock: a user forgotten and written to again never
    gets back a generation that another process's cached matrix was made at."""
    path = tmp_path / "g.db"
    a = Memory(store=SqliteStore(path), embedder=HashEmbedder())
    b = Memory(store=SqliteStore(path), embedder=HashEmbedder())
    a.add([{"role": "user", "content": "the first thing"}], user_id="u")
    assert [h.record.text for h in a.search("first thing", user_id="u", config="semantic")]
    b.forget(user_id="u")
    b.add([{"role": "user", "content": "a second thing"}], user_id="u")
    texts = [h.record.text for h in a.search("second thing", user_id="u", config="semantic")]
    assert texts == ["a second thing"]
    a.close()
    b.close()
