"""What the PostgreSQL store promises beyond the store contract (which it passes too,
tests/test_store_contract.py): row-level security, migrations and writers racing from several
processes, hard delete leaving no rows, BM25 rankings identical to SQLite's, the HNSW path, and
the way ``--db postgresql://...`` opens it. The server: tests/pg.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from engram import HashEmbedder, Memory, RecordFilter, RecordKind, SqliteStore, StoreError
from engram.store.lexical import bm25_reference
from engram.store.postgres import PostgresStore, hnsw
from engram.store.postgres.schema import MIGRATIONS, RLS_TABLES
from pg import APP_ROLE, PgServer, database_of
from test_concurrency import check_keys_match_turns, check_session
from test_store_contract import rec, vec

SECRET = "zebracorn passphrase 4711"


def app_rows(url: str, sql: str, *, user: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` as the app role, in a transaction acting for ``user`` (None: none)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL search_path = engram, public")
        if user is not None:
            conn.execute("SELECT set_config('engram.user_id', %s, true)", (user,))
        return conn.execute(sql).fetchall()


@pytest.fixture
def two_users(pg_url: str) -> str:
    s = PostgresStore(pg_url)
    s.bind_embedder("test", 8)
    s.add([rec("a", "alpha one"), rec("b", "beta two", seq=1, provenance=("a",))], vec(0, 1))
    s.add([rec("x", "the other user's secret", user="u2")], vec(2))
    s.close()
    return pg_url


def test_the_app_role_is_subject_to_row_level_security(two_users: str) -> None:
    [(superuser, bypass)] = app_rows(
        two_users, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    )
    assert (superuser, bypass) == (False, False)
    for table in RLS_TABLES:  # a query that forgets the user filter sees the caller's rows only
        users = {row[0] for row in app_rows(two_users, f"SELECT user_id FROM {table}", user="u1")}
        assert "u2" not in users, table
        assert app_rows(two_users, f"SELECT * FROM {table}") == [], table  # no setting: nothing
    assert {r[0] for r in app_rows(two_users, "SELECT id FROM records", user="u2")} == {"x"}
    changed = app_rows(two_users, "UPDATE records SET text = text RETURNING id", user="u1")
    assert {i for (i,) in changed} == {"a", "b"}  # an unfiltered UPDATE: the caller's rows only
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor may it write another's
        app_rows(
            two_users,
            "INSERT INTO sources (source_id, record_id, user_id) VALUES ('p', 'q', 'u2')",
            user="u1",
        )


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from engram import HashEmbedder, Memory
    from engram.store.postgres import PostgresStore
    url, worker, rounds, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    time.sleep(max(0.0, start - time.time()))  # every worker opens at the same moment
    errors = []
    try:
        mem = Memory(store=PostgresStore(url, pool_size=2), embedder=HashEmbedder())
    except Exception as exc:
        print(json.dumps([f"open: {type(exc).__name__}: {exc}"]))
        sys.exit(0)
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
    mem.close()
    print(json.dumps(errors))
    """
)


def run_workers(tmp_path: Path, url: str, workers: int, rounds: int) -> list[str]:
    import time

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start = time.time() + 1.5  # (the interpreters' start-up)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, str(w), str(rounds), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    errors: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        errors.extend(json.loads(out))
    return errors


def test_migrations_racing_from_several_processes(tmp_path: Path, pg_url: str) -> None:
    """Fresh database, several processes opening it at the same moment: one schema, each
    migration applied once, no error."""
    assert run_workers(tmp_path, pg_url, 4, 0) == []
    versions = app_rows(pg_url, "SELECT version FROM engram.schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, len(MIGRATIONS) + 1))


def test_processes_writing_and_searching_one_database(tmp_path: Path, pg_url: str) -> None:
    workers, rounds = 4, 25  # 4 x 25 adds of 2 turns, most of them to one shared session
    assert run_workers(tmp_path, pg_url, workers, rounds) == []
    mem = Memory(store=PostgresStore(pg_url), embedder=HashEmbedder())
    sessions = {t.session_id for t in mem.list(user_id="u", limit=1000)}
    total = 0
    for session in sorted(s for s in sessions if s):
        n = len(mem.list(user_id="u", session_id=session, limit=1000))
        check_session(mem, "u", session, n)  # no lost or repeated turn, seq without gaps
        total += n
    assert total == workers * rounds * 2
    mem.close()


def test_updates_racing_appends_leave_every_key_current(pg_url: str) -> None:
    mem = Memory(store=PostgresStore(pg_url), embedder=HashEmbedder())
    mem.add([{"role": "user", "content": "turn zero", "id": "m0"}], user_id="u", session_id="s")

    def append() -> None:
        for j in range(1, 41):
            message = {"role": ("user", "assistant")[j % 2], "content": f"turn {j}", "id": f"m{j}"}
            mem.add([message], user_id="u", session_id="s")

    def edit() -> None:
        for j in range(40):
            last = mem.list(user_id="u", session_id="s", limit=1000)[-1]
            mem.update(last.id, f"{last.text} edited {j}", user_id="u")

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(append), pool.submit(edit)]:
            future.result()
    check_session(mem, "u", "s", 41)
    check_keys_match_turns(mem, "u", "s")
    mem.close()


def every_value(server: PgServer, url: str) -> list[str]:
    """Every value of every row of every table of Engram's schema, as text (as a superuser:
    no row-level security), after a VACUUM."""
    database = database_of(url)
    tables = [
        t for (t,) in server.sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'engram'", database=database
        )
    ]  # fmt: skip
    assert set(RLS_TABLES) <= set(tables)
    with psycopg.connect(server.url(database, "postgres"), autocommit=True) as conn:
        conn.execute("VACUUM")
        return [
            str(value)
            for table in tables
            for row in conn.execute(f"SELECT * FROM engram.{table}").fetchall()
            for value in row
        ]


def chat(mem: Memory, user: str = "u", session: str = "s", secret: str = SECRET) -> list[str]:
    turns = mem.add(
        [
            {"role": "user", "content": f"my pin is {secret}", "id": f"msg-{secret[:4]}-id",
             "metadata": {"card": f"meta-{secret[:4]}-9931"}},
            {"role": "assistant", "content": "ok noted, I will remember it."},
            {"role": "user", "content": "what is the weather like today in Porto?"},
        ],
        user_id=user, session_id=session,
    )  # fmt: skip
    return [t.id for t in turns]


def test_delete_and_forget_leave_no_rows(pg_server: PgServer, pg_url: str) -> None:
    mem = Memory(store=PostgresStore(pg_url), embedder=HashEmbedder())
    ids = chat(mem)
    chat(mem, session="other", secret="something else")
    assert any("zebracorn" in v for v in every_value(pg_server, pg_url))
    mem.delete(ids[0], user_id="u")
    values = every_value(pg_server, pg_url)
    for secret in ("zebracorn", "meta-zebr-9931", "msg-zebr-id"):
        assert not any(secret in v for v in values), secret
    assert any("something else" in v for v in values)
    assert [e.event for e in mem.history(ids[0], user_id="u")] == ["ADD", "DELETE"]
    mem.forget(user_id="u", session_id="other")
    assert not any("something else" in v for v in every_value(pg_server, pg_url))
    user = "user-qx31337"
    chat(mem, user=user)
    chat(mem, user="someone-else")
    mem.search("pin", user_id=user)
    mem.forget(user_id=user)
    assert not any(user in v for v in every_value(pg_server, pg_url))
    assert mem.list(user_id="someone-else", limit=10)
    mem.close()


VOCABULARY = (
    "quartz alpha beta gamma delta fox dog running runs ran apple apples river bank money "
    "bank's lazy quick brown jumped over café naïve résumé 2024 x y"
)
WORDS = VOCABULARY.split()


def corpus(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 12)))) for _ in range(n)]


def test_bm25_rankings_match_sqlite_and_the_reference(pg_url: str) -> None:
    texts = corpus(300, 1)
    records = [rec(f"d{i}", t, seq=i, session=f"s{i % 3}") for i, t in enumerate(texts)]
    noise = [rec(f"n{i}", t, user="u2", seq=i) for i, t in enumerate(corpus(200, 2))]
    vectors = np.eye(8, dtype=np.float32)[np.arange(len(records) + len(noise)) % 8]
    pg, lite = PostgresStore(pg_url), SqliteStore(":memory:")
    for s in (pg, lite):
        s.bind_embedder("test", 8)
        s.add([*records, *noise], vectors)
    queries = ["quick brown fox", "banks", "running dog", "cafe resume", "2024", "the x y", "zzz"]
    for query in queries:
        for where in (RecordFilter("u1"), RecordFilter("u1", session_id="s1")):
            got, want = pg.lexical_search(query, where, 50), lite.lexical_search(query, where, 50)
            assert [i for i, _ in got] == [i for i, _ in want], query
            assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-12)
        reference = bm25_reference(texts, query)
        best = sorted(reference.items(), key=lambda kv: (-kv[1], kv[0]))[:50]
        got = pg.lexical_search(query, RecordFilter("u1"), 50)
        assert [i for i, _ in got] == [f"d{i}" for i, _ in best], query
        assert [s for _, s in got] == pytest.approx([s for _, s in best], rel=1e-9)
    pg.close()
    lite.close()


def hnsw_indexes(url: str) -> dict[str, str]:
    """The store's HNSW indexes: name -> definition."""
    rows = app_rows(
        url,
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'engram' "
        "AND indexdef LIKE '%USING hnsw%'",
    )
    return dict(rows)


def index_scans(url: str, name: str, at_least: int) -> int:
    """The scans of index ``name`` counted so far, once they reach ``at_least`` (statistics
    reach the views within a second or so of the transaction that made them), or after 10 s."""
    for _ in range(50):
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", (name,)
            ).fetchone()
        scans = 0 if row is None else int(row[0])
        if scans >= at_least:
            break
        time.sleep(0.2)
    return scans


def test_hnsw_search_finds_what_exact_search_finds(pg_url: str) -> None:
    rng = np.random.default_rng(5)
    dim, n = 32, 3000
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    kinds = [RecordKind.TURN if i % 3 else RecordKind.WINDOW for i in range(n)]
    users = ["u1" if i % 4 else "u2" for i in range(n)]
    records = [rec(f"v{i}", "x", user=users[i], seq=i, kind=kinds[i]) for i in range(n)]
    approximate = PostgresStore(pg_url, exact_below=0)
    approximate.bind_embedder("test", dim)
    approximate.add(records, vectors)
    assert set(hnsw_indexes(pg_url)) == {hnsw.index_name("u1"), hnsw.index_name("u2")}
    exact = PostgresStore(pg_url, exact_below=10**9)
    found = total = 0
    for q in rng.standard_normal((20, dim)).astype(np.float32):
        q /= np.linalg.norm(q)
        for where in (RecordFilter("u2"), RecordFilter("u1", kinds=(RecordKind.WINDOW,))):
            want = exact.vector_search(q, where, 10)
            got = approximate.vector_search(q, where, 10)
            assert len(got) == 10 and all(i.startswith("v") for i, _ in got)
            assert all(users[int(i[1:])] == where.user_id for i, _ in got)
            assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
            found += len({i for i, _ in want} & {i for i, _ in got})
            total += 10
    assert found / total >= 0.9
    assert index_scans(pg_url, hnsw.index_name("u2"), 20) >= 20  # the searches used the index
    approximate.close()
    exact.close()


def test_a_user_gets_an_hnsw_index_at_the_threshold_and_loses_it_when_forgotten(
    pg_url: str,
) -> None:
    s = PostgresStore(pg_url, exact_below=5)
    s.bind_embedder("test", 8)
    s.add([rec(f"a{i}", "one", seq=i) for i in range(4)], vec(*range(4)))
    s.add([rec("z", "other", user="u2")], vec(7))
    assert hnsw_indexes(pg_url) == {}  # 4 vectors, and 1: below the threshold, searched exactly
    s.add([rec("a4", "five", seq=4)], vec(4))
    [(name, definition)] = hnsw_indexes(pg_url).items()
    assert name == hnsw.index_name("u1") and "WHERE (user_id = 'u1'" in definition
    assert s.vector_search(vec(4)[0], RecordFilter("u1"), 1) == [("a4", pytest.approx(1.0))]
    assert index_scans(pg_url, name, 1) >= 1
    assert s.vector_search(vec(7)[0], RecordFilter("u2"), 1) == [("z", 1.0)]
    s.forget("u1")
    assert hnsw_indexes(pg_url) == {}
    s.close()


def test_a_store_without_a_vector_index_searches_exactly(pg_url: str) -> None:
    s = PostgresStore(pg_url, vector_index=False, exact_below=0)
    s.bind_embedder("test", 8)
    s.add([rec("a", "one"), rec("b", "two", seq=1)], vec(0, 1))
    assert s.vector_search(vec(1)[0], RecordFilter("u1"), 1) == [("b", 1.0)]
    assert hnsw_indexes(pg_url) == {}
    s.close()


def test_memory_open_and_the_command_line_take_a_url(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Memory.open(pg_url, embedder=HashEmbedder()) as mem:
        assert isinstance(mem.store, PostgresStore)
        mem.add([{"role": "user", "content": "I keep bees in Porto"}], user_id="u")
    from engram.cli.main import main

    capsys.readouterr()
    assert main(["--db", pg_url, "--embedder", "hash", "search", "bees", "--user", "u"]) == 0
    assert "Porto" in capsys.readouterr().out


def test_errors_are_engrams_and_never_show_the_password(pg_server: PgServer, pg_url: str) -> None:
    wrong = pg_url.replace(f"{APP_ROLE}@", f"{APP_ROLE}:hunter2@").replace("/t", "/missing_t")
    with pytest.raises(StoreError) as caught:
        PostgresStore(wrong, timeout=2)
    assert "hunter2" not in str(caught.value) and "missing_t" in str(caught.value)
    s = PostgresStore(pg_url)
    s.bind_embedder("test", 8)
    with pytest.raises(StoreError):  # PostgreSQL text cannot hold NUL
        s.add([rec("n", "a\x00b")], vec(0))
    assert s.get_many("u1", ["n"]) == []
    with pytest.raises(StoreError):
        s.add([replace(rec("big", "x"), seq=2**63)], vec(0))
    s.close()


def test_read_only_and_a_newer_schema(two_users: str) -> None:
    ro = PostgresStore(two_users, read_only=True)
    assert [r.id for r in ro.get_many("u1", ["a", "x"])] == ["a"]
    with pytest.raises(StoreError, match="read-only"):
        ro.add([rec("n", "new", seq=5)], vec(3))
    with pytest.raises(StoreError, match="read-only"):
        ro.forget("u1")
    ro.close()
    with psycopg.connect(two_users, autocommit=True) as conn:
        conn.execute("INSERT INTO engram.schema_migrations (version) VALUES (99)")
    with pytest.raises(StoreError, match="newer than this Engram"):
        PostgresStore(two_users)


def test_serve_settings_keep_no_key_file_next_to_a_url() -> None:
    from engram.server.settings import ServerSettings
    from engram.store.postgres import display_db

    url = "postgresql://engram_app:hunter2@db.internal:5433/engram?sslmode=require"
    assert ServerSettings(db=url).keys_path is None
    assert ServerSettings(db=url, keys="/etc/engram/keys").keys_path == "/etc/engram/keys"
    assert display_db(url) == "postgresql://engram_app@db.internal:5433/engram"
    assert display_db("engram.db") == "engram.db"
