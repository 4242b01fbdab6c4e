"""The user listing of the Store contract (run against every backend of conftest): distinct
user ids with records, by prefix, in code point order, paged with ``after``; erased users and
users whose records were all deleted are gone from it."""

from __future__ import annotations

import pytest

from engram import Store
from engram.store.base import prefix_end
from test_store_contract import DIM, rec, vec

IDS = ["acme/bob", "acme/alice", "b", "acme/zoë", "acme/日本", "acmex", "a", "acme/"]


def seeded(store: Store, ids: list[str] = IDS) -> Store:
    store.bind_embedder("test", DIM)
    for n, user in enumerate(ids):
        store.add([rec(f"r{n}", f"hello {n}", user=user), rec(f"q{n}", "more", user=user, seq=1)],
                  vec(n % DIM, (n + 1) % DIM))  # fmt: skip
    return store


def test_every_user_once_in_code_point_order(store: Store) -> None:
    seeded(store)
    assert store.users(limit=100) == sorted(IDS)
    assert store.users(limit=3) == sorted(IDS)[:3]


def test_prefix_selects_exactly_the_ids_that_start_with_it(store: Store) -> None:
    seeded(store)
    assert store.users(prefix="acme/", limit=100) == [
        "acme/", "acme/alice", "acme/bob", "acme/zoë", "acme/日本",
    ]  # fmt: skip
    assert store.users(prefix="acme", limit=100) == sorted(i for i in IDS if i.startswith("acme"))
    assert store.users(prefix="acme/日", limit=100) == ["acme/日本"]
    assert store.users(prefix="nobody", limit=100) == []


def test_pages_with_after_neither_skip_nor_repeat(store: Store) -> None:
    seeded(store)
    seen: list[str] = []
    after: str | None = None
    while page := store.users(prefix="acme/", limit=2, after=after):
        assert len(page) <= 2
        seen += page
        after = page[-1]
    assert seen == sorted(i for i in IDS if i.startswith("acme/"))
    assert store.users(limit=100, after="acme/zz") == ["acme/日本", "acmex", "b"]
    assert store.users(prefix="acme/", limit=100, after="a") == store.users(prefix="acme/", limit=9)
    assert store.users(prefix="acme/", limit=100, after="acmf") == []


def test_forgotten_users_disappear(store: Store) -> None:
    seeded(store)
    store.forget("acme/bob")
    assert "acme/bob" not in store.users(limit=100)
    store.forget("b", session_id="s1")  # their only session
    assert store.users(limit=100) == sorted(set(IDS) - {"acme/bob", "b"})


def test_a_user_whose_records_are_all_deleted_disappears(store: Store) -> None:
    seeded(store, ["u1", "u2"])
    store.delete("u1", "r0")
    assert store.users(limit=10) == ["u1", "u2"]
    store.delete("u1", "q0")
    assert store.users(limit=10) == ["u2"]


def test_an_empty_store_lists_no_one(store: Store) -> None:
    assert store.users(limit=10) == []


@pytest.mark.parametrize(
    ("prefix", "end"),
    [("", None), ("a", "b"), ("a/", "a0"), ("z\U0010ffff", "{"), ("\U0010ffff", None),
     ("x\ud7ff", "x\ue000")],
)  # fmt: skip
def test_prefix_end_bounds_the_range(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end
