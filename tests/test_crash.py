"""Killing an importing process (SIGKILL, at random points) loses no acknowledged write and leaves
no half-written record; importing the same input again completes it, exactly once.

A child process imports a fixed conversation set with the hashing embedder and prints the
message ids of each ``Memory.add`` after it returns. The parent kills it after a random delay,
checks the file against a clean import of the same input, and starts the next child on the same
file, which picks up where the killed one stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from store_file import check_file

KILLS = 20
SEED = 20240501

CHILD = """
import json, sys
from engram import HashEmbedder, Memory, SqliteStore
path, data = sys.argv[1], sys.argv[2]
with open(data, encoding="utf-8") as f:
    sessions = json.load(f)
mem = Memory(store=SqliteStore(path), embedder=HashEmbedder())
print("ready", flush=True)
for s in sessions:
    for batch in s["batches"]:
        mem.add(batch, user_id=s["user"], session_id=s["id"], session_date=s["date"])
        print(json.dumps([m["id"] for m in batch]), flush=True)  # acknowledged
mem.close()
print("done", flush=True)
"""

WORDS = [
    *("lisbon", "pottery", "sister", "tuesday", "garden", "piano", "marathon", "recipe"),
    *("camping", "lake", "museum", "train", "coffee", "winter", "guitar", "novel", "bicycle"),
    *("market", "river", "doctor", "puppy", "kitchen", "concert", "office"),
]


def conversations(rng: random.Random) -> list[dict[str, Any]]:
    """Two users, eight sessions each, 8-13 messages a session, in add() batches of 1-4; about a
    third of the messages have several sentences (so they get sentence keys)."""
    sessions = []
    for user in ("u1", "u2"):
        for n in range(8):
            messages = []
            for i in range(rng.randint(8, 13)):
                role = "user" if i % 2 == 0 or rng.random() < 0.2 else "assistant"
                sentences = [
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).capitalize() + "."
                    for _ in range(rng.choice((1, 1, 2, 3)))
                ]
                messages.append({"id": f"{user}-s{n}-m{i}", "role": role,
                                 "content": " ".join(sentences)})  # fmt: skip
            batches, start = [], 0
            while start < len(messages):
                size = rng.randint(1, 4)
                batches.append(messages[start : start + size])
                start += size
            sessions.append({"user": user, "id": f"s{n}", "date": f"2024-05-{n + 1:02d}",
                             "batches": batches})  # fmt: skip
    return sessions


def run_child(db: Path, data: Path, kill_after: float | None) -> tuple[set[str], bool, float]:
    """Import ``data`` into ``db`` in a child; kill it ``kill_after`` s after it is ready.
    Returns the acknowledged message ids, whether the child finished, and how long it ran after
    it was ready."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    ) as child:  # fmt: skip
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready == "ready\n", ready + child.stdout.read()
        started = time.monotonic()
        if kill_after is not None:
            time.sleep(kill_after)
            child.send_signal(signal.SIGKILL)
        out = child.stdout.read()  # not communicate(): it would skip what readline() buffered
        child.wait(120)
        ran = time.monotonic() - started
    if kill_after is None:
        assert child.returncode == 0, out
    acked: set[str] = set()
    for line in out.splitlines():
        if line.startswith("["):  # a line cut short by the kill is not an acknowledgement
            with contextlib.suppress(json.JSONDecodeError):
                acked.update(json.loads(line))
    return acked, out.endswith("done\n"), ran


Row = tuple[str, str, str, str, int, str, str, str]


def rows(db: Path) -> dict[str, tuple[Row, bytes]]:
    """Every record (id, user, session, kind, seq, text, provenance, message ids) and its vector,
    read through a fresh connection (which recovers the WAL a killed writer left)."""
    conn = sqlite3.connect(db)
    try:
        found = {
            row[0]: (tuple(row[:8]), row[8])
            for row in conn.execute(
                "SELECT r.id, r.user_id, r.session_id, r.kind, r.seq, r.text, r.provenance, "
                "r.message_ids, v.vector FROM records r LEFT JOIN vectors v ON v.rowid = r.rowid"
            )
        }
    finally:
        conn.close()
    return found


NO_DELETES = {  # the crash tests never delete: every history event has its record
    "history without record": "SELECT count(*) FROM history h WHERE NOT EXISTS "
    "(SELECT 1 FROM records r WHERE r.id = h.record_id)",
}


def built(row: Row, turns: set[str]) -> bool:
    """Whether a record of the clean import belongs in a file that holds ``turns``."""
    return row[0] in turns if row[3] == "turn" else set(json.loads(row[6])) <= turns


def check_against(db: Path, reference: dict[str, tuple[Row, bytes]], acked: set[str]) -> int:
    """The file holds a prefix of every session, exactly as the clean import stored it, with
    every key built from those turns and no other; it holds every acknowledged message.
    Returns how many turns it holds."""
    check_file(db, NO_DELETES)
    stored = rows(db)
    turns = {rid for rid, (row, _) in stored.items() if row[3] == "turn"}
    assert set(stored) == {rid for rid, (row, _) in reference.items() if built(row, turns)}
    for rid, (row, vector) in stored.items():
        assert row == reference[rid][0]
        assert np.allclose(np.frombuffer(vector, np.float32),
                           np.frombuffer(reference[rid][1], np.float32), atol=1e-6)  # fmt: skip
    sessions: dict[tuple[str, str], list[int]] = {}
    for rid in turns:
        row = stored[rid][0]
        sessions.setdefault((row[1], row[2]), []).append(row[4])
    assert all(sorted(seqs) == list(range(len(seqs))) for seqs in sessions.values())
    listed = [m for rid in turns for m in json.loads(stored[rid][0][7])]
    messages = set(listed)
    assert len(listed) == len(messages)  # no message stored twice
    assert acked <= messages, sorted(acked - messages)[:5]
    return len(turns)


def test_killed_imports_lose_nothing_acknowledged_and_resume_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "input.json"
    data.write_text(json.dumps(conversations(rng)), encoding="utf-8")
    ref_db, db = tmp_path / "reference.db", tmp_path / "killed.db"
    *_, full = run_child(ref_db, data, None)  # how long a whole import takes
    reference = rows(ref_db)
    *_, skip = run_child(ref_db, data, None)  # and one that finds everything stored
    assert rows(ref_db) == reference
    total = sum(1 for row, _ in reference.values() if row[3] == "turn")
    kills, held, acked = 0, 0, set[str]()
    while kills < KILLS:  # a kill at a random point of the next child's run
        done = held / total
        new, finished, _ = run_child(db, data, rng.uniform(0, skip * done + full * (1 - done)))
        acked |= new
        held = check_against(db, reference, acked)
        kills += not finished
        if finished:  # the kill came too late: start again on a new file
            assert held == total
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            held, acked = 0, set()
    run_child(db, data, None)  # import the same input again: it completes what is missing
    assert check_against(db, reference, acked) == total
    assert set(rows(db)) == set(reference)
    before = rows(db)
    run_child(db, data, None)  # and once more: nothing changes
    assert rows(db) == before


@pytest.mark.parametrize("seed", [1, 2])
def test_conversations_have_sentence_keys_and_several_batches(seed: int) -> None:
    sessions = conversations(random.Random(seed))
    contents = [m["content"] for s in sessions for b in s["batches"] for m in b]
    assert sum(c.count(".") > 1 for c in contents) > len(contents) // 5
    assert sum(len(s["batches"]) > 2 for s in sessions) > len(sessions) // 2
