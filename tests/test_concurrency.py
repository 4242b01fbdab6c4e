"""Several writers appending to one session at once, in threads and in processes: every turn is
stored once, ``seq`` numbers the session without gaps or repeats, and every round and window key
spans consecutive turns."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from engram import ConflictError, HashEmbedder, Memory, RecordKind, SqliteStore
from engram.store.base import SessionTail


def check_session(mem: Memory, user: str, session: str, expected: int) -> None:
    turns = mem.list(user_id=user, session_id=session, limit=1000)
    assert len(turns) == expected
    assert sorted(t.seq for t in turns) == list(range(expected))  # no gap, no repeat
    seq = {t.id: t.seq for t in turns}
    assert len({t.message_id for t in turns}) == expected
    for kind in (RecordKind.ROUND, RecordKind.WINDOW):
        for key in mem.list(user_id=user, session_id=session, kinds=[kind], limit=1000):
            numbers = [seq[i] for i in key.provenance]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), key
    rounds = mem.list(user_id=user, session_id=session, kinds=["round"], limit=1000)
    assert Counter(len(r.provenance) for r in rounds) == Counter({2: len(rounds)})


def test_threads_appending_to_one_session(tmp_path: Path) -> None:
    """The reproducer of issue 8: 4 threads x 50 adds gave 200 turns with 149 distinct seq."""
    mem = Memory(store=SqliteStore(tmp_path / "c.db"), embedder=HashEmbedder())

    def work(i: int) -> None:
        for j in range(50):
            role = "user" if j % 2 == 0 else "assistant"
            mem.add(
                [{"role": role, "content": f"t{i} {j}", "id": f"{i}-{j}"}],
                user_id="u",
                session_id="s",
            )

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(work, i) for i in range(4)]:
            future.result()
    check_session(mem, "u", "s", 200)
    # the same messages again, concurrently: nothing new
    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(work, i) for i in range(4)]:
            future.result()
    check_session(mem, "u", "s", 200)
    mem.close()


def test_a_conditional_add_with_a_stale_tail_writes_nothing(tmp_path: Path) -> None:
    mem = Memory(store=SqliteStore(tmp_path / "c.db"), embedder=HashEmbedder())
    first = mem.add([{"role": "user", "content": "one"}], user_id="u", session_id="s")[0]
    before = mem.stats(user_id="u")
    stale = SessionTail("u", "s", ())
    record = mem.list(user_id="u")[0]
    vector = mem.store.get_vectors("u", [record.id])
    clone = replace(record, id="other", seq=1)
    with pytest.raises(ConflictError):
        mem.store.add([clone], vector, expect=stale)
    with pytest.raises(ConflictError):  # right tail, but an id that is stored already
        mem.store.add([record], vector, expect=SessionTail("u", "s", ((first.id, "one"),)))
    with pytest.raises(ConflictError):  # right id, but the turn's text changed since
        mem.store.add([clone], vector, expect=SessionTail("u", "s", ((first.id, "uno"),)))
    assert mem.stats(user_id="u") == before
    mem.close()


WORKER = textwrap.dedent(
    """
    import json, sys
    from engram import HashEmbedder, Memory, SqliteStore

    path, worker, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mem = Memory(store=SqliteStore(path), embedder=HashEmbedder())
    errors = []
    for j in range(rounds):
        session = "shared" if worker % 2 == 0 or j % 3 else f"own-{worker}"
        try:
            key = f"{worker}-{j}"
            q = {"role": "user", "content": f"w{worker} question {j} quartz", "id": key + "-q"}
            a = {"role": "assistant", "content": f"w{worker} answer {j}", "id": key + "-a"}
            mem.add([q, a], user_id="u", session_id=session)
            hits = mem.search(f"w{worker} question {j} quartz", user_id="u", limit=5)
            if not any(h.message_id == f"{worker}-{j}-q" for h in hits):
                errors.append(f"search missed {worker}-{j}")
        except Exception as exc:  # the test counts every error
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(errors))
    """
)


def test_processes_writing_and_searching_one_file(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    SqliteStore(path).close()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers, rounds = 4, 15
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), str(w), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    errors = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        errors.extend(json.loads(out))
    assert errors == []
    mem = Memory(store=SqliteStore(path), embedder=HashEmbedder())
    sessions = {t.session_id for t in mem.list(user_id="u", limit=1000)}
    total = 0
    for session in sessions:
        n = len(mem.list(user_id="u", session_id=session, limit=1000))
        check_session(mem, "u", session, n)
        total += n
    assert total == workers * rounds * 2
    mem.close()


def check_keys_match_turns(mem: Memory, user: str, session: str) -> None:
    """Every round and window key holds the current texts of its turns."""
    turns = {t.id: t for t in mem.list(user_id=user, session_id=session, limit=1000)}
    for kind in ("round", "window"):
        for key in mem.list(user_id=user, session_id=session, kinds=[kind], limit=1000):
            assert key.text == "\n".join(turns[i].key_text for i in key.provenance), key


def test_updates_racing_appends_leave_every_key_current(tmp_path: Path) -> None:
    mem = Memory(store=SqliteStore(tmp_path / "u.db"), embedder=HashEmbedder())
    mem.add([{"role": "user", "content": "turn zero", "id": "m0"}], user_id="u", session_id="s")

    def append() -> None:
        for j in range(1, 101):
            message = {"role": ("user", "assistant")[j % 2], "content": f"turn {j}", "id": f"m{j}"}
            mem.add([message], user_id="u", session_id="s")

    def edit() -> None:
        for j in range(100):
            last = mem.list(user_id="u", session_id="s", limit=1000)[-1]
            mem.update(last.id, f"{last.text} edited {j}", user_id="u")

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(append), pool.submit(edit)]:
            future.result()
    check_session(mem, "u", "s", 101)
    check_keys_match_turns(mem, "u", "s")
    mem.close()


def test_a_conditional_update_with_stale_sources_changes_nothing(tmp_path: Path) -> None:
    from engram.store.base import Sources

    mem = Memory(store=SqliteStore(tmp_path / "u.db"), embedder=HashEmbedder())
    turns = mem.add(
        [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}],
        user_id="u",
        session_id="s",
    )
    keys = frozenset(k.id for k in mem.store.derived_from("u", turns[0].id))
    vector = mem.store.get_vectors("u", [turns[0].id])
    before = mem.list(user_id="u", kinds=(), limit=100)
    for stale in (
        Sources({turns[0].id: "one", turns[1].id: "an older two"}, keys),
        Sources({turns[0].id: "one", turns[1].id: "two"}, keys - {next(iter(keys))}),
    ):
        with pytest.raises(ConflictError):
            mem.store.update("u", [(turns[0].id, "uno")], vector, expect=stale)
    assert mem.list(user_id="u", kinds=(), limit=100) == before
    mem.close()
