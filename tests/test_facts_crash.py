"""Deferred extraction survives kills: a process killed (SIGKILL) after its adds returned, or in
the middle of processing a job, loses no turn and no job; the job is processed once, later,
by another process."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engram import HashEmbedder, Memory, SqliteStore
from fact_model import rule_llm
from store_file import check_file

TESTS = str(Path(__file__).parent)

CHILD = """
import sys, threading, time
sys.path.insert(0, sys.argv[3])
from engram import HashEmbedder, Memory, SqliteStore
from engram.llm import ScriptedLLM
path, mode = sys.argv[1], sys.argv[2]

def hang(messages, schema):
    print("processing", flush=True)
    time.sleep(600)

mem = Memory(store=SqliteStore(path), embedder=HashEmbedder(), llm=ScriptedLLM([hang]),
             extract="background")
for i, hobby in enumerate(["chess", "tea", "jazz"]):
    mem.add([{"role": "user", "content": f"I love {hobby}."}], user_id="alice",
            session_id=f"s{i}", session_date="2023-05-08")
    print("added", i, flush=True)
if mode == "process":
    mem.process_pending()
else:
    time.sleep(600)
"""


def run_and_kill(path: Path, mode: str, until: str) -> list[str]:
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, TESTS], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = child.stdout.readline().strip()
            lines.append(line)
            if line == until or not line:
                break
        child.kill()  # SIGKILL: no cleanup of any kind
        child.wait(timeout=30)
    return lines


def reopen(path: Path) -> tuple[Memory, object]:
    llm, model = rule_llm()
    return Memory(store=SqliteStore(path), embedder=HashEmbedder(), llm=llm), model


def test_a_kill_after_the_adds_loses_no_job(tmp_path):
    path = tmp_path / "m.db"
    assert run_and_kill(path, "wait", "added 2")[-1] == "added 2"
    check_file(path)
    mem, _ = reopen(path)
    assert mem.stats().pending_jobs == 3
    report = mem.process_pending()
    assert report.done == 3
    texts = sorted(f.text for f in mem.list(user_id="alice", kinds=["fact"]))
    assert texts == ["user likes chess", "user likes jazz", "user likes tea"]
    assert mem.process_pending().jobs == ()  # each job once
    mem.close()


def test_a_kill_in_the_middle_of_a_job_leaves_it_leased_then_claimed_again(tmp_path):
    path = tmp_path / "m.db"
    assert run_and_kill(path, "process", "processing")[-1] == "processing"
    check_file(path)
    mem, _ = reopen(path)
    assert mem.stats().pending_jobs == 3
    assert mem.process_pending(limit=10).done == 2  # the leased one waits for its lease to end
    later = datetime.now(UTC) + timedelta(seconds=301)
    (job,) = mem.store.claim_jobs(now=later, lease_seconds=60, limit=5)
    assert job.attempts == 2  # the killed attempt counted
    report = mem._pipeline().process(job, later)
    assert report.error is None and mem.stats().pending_jobs == 0
    assert len(mem.list(user_id="alice", kinds=["fact"])) == 3
    mem.close()
