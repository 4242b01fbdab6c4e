"""The per-user cache behind the SQLite store's in-memory matrices and speaker names."""

from __future__ import annotations

from engram.store.sqlite.usercache import UserCache


def test_values_follow_the_generation_and_the_least_recent_user_goes() -> None:
    built: list[str] = []

    def build(value: str) -> str:
        built.append(value)
        return value

    cache: UserCache[str] = UserCache(2)
    assert cache.get("a", 1, lambda: build("a1")) == "a1"
    assert cache.get("a", 1, lambda: build("again")) == "a1"  # same generation: kept
    assert cache.get("a", 2, lambda: build("a2")) == "a2"  # another process wrote: rebuilt
    cache.get("b", 1, lambda: build("b1"))
    cache.get("a", 2, lambda: build("unused"))  # "a" is now the most recent
    cache.get("c", 1, lambda: build("c1"))  # evicts "b"
    assert len(cache) == 2 and cache.peek("b") is None and cache.peek("a") == "a2"
    assert built == ["a1", "a2", "b1", "c1"]


def test_advance_carries_only_from_the_previous_generation() -> None:
    cache: UserCache[tuple[int, ...]] = UserCache(4)
    cache.get("a", 3, lambda: (1,))
    cache.advance("a", (3, 7), lambda v: (*v, 2))  # other users moved the clock meanwhile
    assert cache.peek("a") == (1, 2)
    assert cache.get("a", 7, lambda: (99,)) == (1, 2)
    cache.advance("a", (8, 9), lambda v: (*v, 3))  # a write by someone else came in between
    assert cache.peek("a") is None
    cache.advance("nobody", (0, 1), lambda v: v)  # nothing cached: nothing to do
    assert cache.peek("nobody") is None
    cache.get("b", 1, lambda: (5,))
    cache.drop("b")
    cache.clear()
    assert len(cache) == 0
