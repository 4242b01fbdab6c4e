"""What the SQLite store does with the file it is given: a new file opened by many processes at
once, corrupt, foreign and locked files, read-only files, and the migration procedure."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engram import (
    HYBRID,
    SEMANTIC,
    HashEmbedder,
    Memory,
    SqliteStore,
    StoreError,
    StoreLockedError,
)
from engram.cli.main import main
from engram.store.sqlite import connect, schema
from engram.store.sqlite.connect import translate_errors
from engram.store.sqlite.schema import APPLICATION_ID, MIGRATIONS

ENGRAM_TABLES = {"meta", "records", "vectors", "sources", "history", "generations", "lex_postings"}


def build(path: Path) -> None:
    """An Engram database with a few turns, made with the hashing embedder."""
    with Memory(store=SqliteStore(path), embedder=HashEmbedder()) as mem:
        mem.add(
            [
                {"role": "user", "content": "I moved to Lisbon in May. The flat is small."},
                {"role": "assistant", "content": "Lisbon is lovely in spring."},
                {"role": "user", "content": "My sister Ana visits in June."},
            ],
            user_id="u",
            session_id="s1",
        )


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def sql(path: Path | str, *statements: str) -> list[Any]:
    """Run ``statements`` on the file through a plain connection; the last one's rows."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        return [conn.execute(statement).fetchall() for statement in statements][-1]


def marks(path: Path) -> tuple[int, int, str]:
    """user_version, application_id and journal mode."""
    return sql(path, "SELECT * FROM pragma_user_version, pragma_application_id, "
               "pragma_journal_mode")[0]  # fmt: skip


# -- many openers of one new file -----------------------------------------------------------------


def _open_when_told(path: str, threads: int, ready: Any, go: Any, results: Any) -> None:
    def one() -> None:
        ready.put(1)
        go.wait(60)
        try:
            SqliteStore(path).close()
            results.put("ok")
        except Exception as exc:  # reported to the test, which shows it
            results.put(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_many_processes_and_threads_open_one_new_file_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "new.db")
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_open_when_told, args=(path, 2, ready, go, results)) for _ in range(16)
    ]
    local = threading.Thread(target=_open_when_told, args=(path, 4, ready, go, results))
    for p in procs:
        p.start()
    local.start()
    for _ in range(16 * 2 + 4):
        ready.get(timeout=60)
    go.set()
    outcomes = [results.get(timeout=120) for _ in range(16 * 2 + 4)]
    for p in procs:
        p.join(60)
    local.join(60)
    assert outcomes == ["ok"] * len(outcomes), sorted(set(outcomes))
    assert marks(Path(path)) == (len(MIGRATIONS), APPLICATION_ID, "wal")
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    assert {r[0] for r in sql(path, "SELECT name FROM sqlite_master")} >= ENGRAM_TABLES


# -- corrupt, foreign and locked files -------------------------------------------------------------


def _random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).bytes(8192))


def _text(path: Path) -> None:
    path.write_text("user,message\nu1,hello\n" * 50, encoding="utf-8")


def _truncated(path: Path) -> None:
    build(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_random, "is not an SQLite database"),
        (_text, "is not an SQLite database"),
        (_truncated, "is damaged"),
    ],
)
def test_a_file_engram_cannot_read_is_a_store_error(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "bad.db"
    make(path)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match=message) as caught:
        SqliteStore(path)
    assert str(path) in str(caught.value)
    assert snapshot(tmp_path) == before


def test_a_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        SqliteStore(tmp_path)


def _foreign(path: Path, *pragmas: str) -> None:
    sql(
        path, *(f"PRAGMA {pragma}" for pragma in pragmas),
        "CREATE TABLE contacts (name TEXT, phone TEXT)",
        "CREATE INDEX contacts_name ON contacts (name)",
        "INSERT INTO contacts VALUES ('Ana', '555')",
    )  # fmt: skip


@pytest.mark.parametrize(
    "pragmas",
    [
        (),
        ("user_version = 1",),
        ("application_id = 42", "user_version = 3"),
        ("journal_mode = WAL",),
    ],
    ids=["plain", "user-version-1", "other-app", "wal"],
)
def test_another_programs_database_is_refused_and_left_untouched(
    tmp_path: Path, pragmas: tuple[str, ...]
) -> None:
    path = tmp_path / "contacts.db"
    _foreign(path, *pragmas)
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match=r"not Engram's .*tables: contacts") as caught:
        SqliteStore(path)
    assert str(path) in str(caught.value)
    assert snapshot(tmp_path) == before  # same bytes, no -wal or -shm, no tables added


def test_a_foreign_file_is_refused_by_the_cli_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign, garbage = tmp_path / "contacts.db", tmp_path / "garbage.db"
    _foreign(foreign)
    _text(garbage)
    for db, fragment in ((foreign, "not Engram's"), (garbage, "not an SQLite database")):
        for command in (
            ["search", "hi", "--user", "u"],
            ["add", "--user", "u", "--content", "hello"],
        ):
            code = main(["--db", str(db), "--embedder", "hash", *command])
            out, err = capsys.readouterr()
            assert (code, out) == (1, "")
            assert err.startswith("engram: error: ") and err.count("\n") == 1, err
            assert fragment in err


def test_an_empty_or_schemaless_file_is_new(tmp_path: Path) -> None:
    empty, fresh = tmp_path / "empty.db", tmp_path / "fresh.db"
    empty.touch()
    sql(fresh, "PRAGMA page_size = 8192", "VACUUM")  # a non-empty file with no schema objects
    assert fresh.stat().st_size > 0
    for path in (empty, fresh):
        SqliteStore(path).close()
        assert marks(path) == (len(MIGRATIONS), APPLICATION_ID, "wal")


def test_a_database_of_an_earlier_version_is_adopted_and_stamped(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    build(path)
    sql(path, "PRAGMA application_id = 0")  # what versions before the mark wrote
    SqliteStore(path, read_only=True).close()
    assert marks(path)[1] == 0  # a read-only open does not stamp it
    store = SqliteStore(path)
    assert store.stats().records["turn"] == 3
    store.close()
    assert marks(path) == (len(MIGRATIONS), APPLICATION_ID, "wal")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    build(path)
    sql(path, f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this Engram"):
        SqliteStore(path)


def _hold(path: Path, how: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if how == "exclusive":
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE" if how == "exclusive" else "BEGIN IMMEDIATE")
    conn.execute("INSERT INTO meta VALUES ('held', 'yes')")
    return conn


def test_a_locked_file_is_reported_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    build(path)
    holder = _hold(path, "exclusive")
    started = time.monotonic()
    with pytest.raises(
        StoreLockedError, match=r"held\.db is locked by another process; waited 0\.3 s"
    ):
        SqliteStore(path, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 10
    holder.close()
    SqliteStore(path, timeout=0.3).close()


def test_a_write_waits_for_the_timeout_then_says_locked(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    build(path)
    store = SqliteStore(path, timeout=0.2)
    holder = _hold(path, "write")
    store.bind_embedder(HashEmbedder().name, HashEmbedder().dim)  # recorded: no write
    with Memory(store=store, embedder=HashEmbedder()) as mem:
        assert mem.search("Lisbon", user_id="u", config=HYBRID)
        with pytest.raises(StoreLockedError, match=r"waited 0\.2 s"):
            mem.add([{"role": "user", "content": "another"}], user_id="u")
    holder.close()


def test_translate_errors_names_the_file(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    with (
        pytest.raises(StoreError, match=r"x\.db: no such table: nope"),
        translate_errors(str(tmp_path / "x.db"), timeout=1),
    ):
        conn.execute("SELECT * FROM nope")
    conn.close()
    with pytest.raises(StoreError, match="damaged"), translate_errors("x.db", timeout=1):
        raise sqlite3.DatabaseError("database disk image is malformed")


# -- read-only files -------------------------------------------------------------------------------


def _check_reads(store: SqliteStore) -> None:
    with Memory(store=store, embedder=HashEmbedder()) as mem:
        for config in (HYBRID, SEMANTIC):
            hits = mem.search("where does the user live? Lisbon", user_id="u", config=config)
            assert hits and "Lisbon" in hits[0].record.text
        turns = mem.list(user_id="u")
        assert len(turns) == 3 and mem.get(turns[0].id, user_id="u") == turns[0]
        assert mem.stats().records["turn"] == 3
        with pytest.raises(StoreError, match="is read-only"):
            mem.add([{"role": "user", "content": "a new message"}], user_id="u")
        with pytest.raises(StoreError, match="is read-only"):
            mem.forget(user_id="u")


def test_an_explicitly_read_only_store_searches_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    build(path)
    before = path.read_bytes()
    store = SqliteStore(path, read_only=True)
    assert store.read_only
    _check_reads(store)
    assert path.read_bytes() == before


def test_a_file_nobody_may_write_opens_read_only_even_for_root(tmp_path: Path) -> None:
    path = tmp_path / "444.db"
    build(path)
    path.chmod(0o444)
    try:
        store = SqliteStore(path)
        assert store.read_only
        _check_reads(store)
    finally:
        path.chmod(0o644)
    store = SqliteStore(path)
    assert not store.read_only
    store.close()


def test_bind_embedder_does_not_write_what_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "bound.db"
    build(path)
    store = SqliteStore(path)
    changes = store._conn.total_changes
    store.bind_embedder(HashEmbedder().name, HashEmbedder().dim)
    assert store._conn.total_changes == changes
    store.close()


def test_a_read_only_empty_or_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at"):
        SqliteStore(tmp_path / "missing.db", read_only=True)
    (tmp_path / "empty.db").touch()
    with pytest.raises(StoreError, match="holds no Engram database"):
        SqliteStore(tmp_path / "empty.db", read_only=True)


CHILD = """
import os, sys
from engram import HYBRID, HashEmbedder, Memory, SqliteStore
import engram.read.retrieve  # everything imported while still root
os.setgid(65534)
os.setuid(65534)  # nobody: may not write the file, nor create -shm next to it
store = SqliteStore(sys.argv[1])
with Memory(store=store, embedder=HashEmbedder()) as mem:
    hits = mem.search("Lisbon", user_id="u", config=HYBRID)
print(store.read_only, hits[0].record.text.split(".")[0])
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_read_only_directory_is_read_through_an_immutable_connection() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        directory = Path(tmp)
        path = directory / "shared.db"
        build(path)
        directory.chmod(0o755)  # root's: others may read, not write
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
            capture_output=True, text=True, env=env, cwd="/", timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        read_only, first = done.stdout.split(" ", 1)
        assert read_only == "True" and "Lisbon" in first
        assert sorted(p.name for p in directory.iterdir()) == ["shared.db"]


# -- the migration procedure -----------------------------------------------------------------------


def test_a_function_migration_runs_inside_the_migration_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v1.db"
    build(path)
    seen: list[bool] = []

    def add_tags(conn: sqlite3.Connection) -> None:
        seen.append(conn.in_transaction)
        conn.execute("CREATE TABLE tags (record_id TEXT, tag TEXT)")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        conn.execute("SELECT * FROM no_such_table")

    for module in (schema, connect):
        monkeypatch.setattr(module, "MIGRATIONS", (*MIGRATIONS, add_tags, broken))
    n = len(MIGRATIONS)  # the file is at version n: the two new ones come after it
    with pytest.raises(StoreError, match=f"schema migration {n + 2} failed: no such table"):
        SqliteStore(path)
    assert marks(path)[0] == n  # all or nothing: migration n + 1 was rolled back with n + 2
    assert not sql(path, "SELECT 1 FROM sqlite_master WHERE name IN ('tags', 'half')")
    with pytest.raises(StoreError, match=f"read-only and has schema version {n}"):
        SqliteStore(path, read_only=True)
    for module in (schema, connect):
        monkeypatch.setattr(module, "MIGRATIONS", (*MIGRATIONS, add_tags))
    SqliteStore(path).close()
    assert seen == [True, True] and marks(path)[0] == n + 1


def test_migrate_does_not_adopt_tables_it_did_not_make(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    with pytest.raises(StoreError, match="not Engram's"):
        schema.migrate(conn, "mem")
    assert not conn.in_transaction
    conn.close()


def test_timeout_is_validated() -> None:
    for bad in (-1, "5", True):
        with pytest.raises(ValueError, match="timeout"):
            SqliteStore(timeout=bad)  # type: ignore[arg-type]
