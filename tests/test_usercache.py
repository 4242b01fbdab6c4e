"""The per-user cache behind the SQLite store's in-memory matrices and speaker names."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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


def test_a_write_reported_while_a_value_is_built_is_carried_over_to_it() -> None:
    cache: UserCache[tuple[int, ...]] = UserCache(4)

    def build_while_writing() -> tuple[int, ...]:
        cache.advance("a", (1, 3), lambda v: (*v, 30))  # another user wrote in between: 3
        cache.advance("a", (0, 1), lambda v: (*v, 99))  # in the snapshot already: skipped
        cache.advance("a", (3, 4), lambda v: (*v, 40))
        return (10,)

    assert cache.get("a", 1, build_while_writing) == (10, 30, 40)
    assert cache.get("a", 4, lambda: (0,)) == (10, 30, 40)  # kept at the last generation


def test_a_write_of_another_process_breaks_the_carry_over() -> None:
    cache: UserCache[tuple[int, ...]] = UserCache(4)

    def build() -> tuple[int, ...]:
        cache.advance("a", (2, 3), lambda v: (*v, 30))  # someone else wrote 1 -> 2
        return (10,)

    assert cache.get("a", 1, build) == (10,)
    assert cache.get("a", 3, lambda: (11,)) == (11,)  # what was kept was stale: rebuilt


def test_a_drop_while_a_value_is_built_keeps_nothing() -> None:
    cache: UserCache[str] = UserCache(4)

    def build() -> str:
        cache.drop("a")  # forgotten meanwhile
        return "old"

    assert cache.get("a", 1, build) == "old"  # (serves the call that built it)
    assert cache.peek("a") is None


def test_an_entry_made_meanwhile_stays() -> None:
    cache: UserCache[str] = UserCache(4)
    assert cache.get("a", 2, lambda: cache.get("a", 2, lambda: "theirs") and "mine") == "theirs"
    assert cache.get("b", 1, lambda: cache.get("b", 2, lambda: "newer") and "mine") == "mine"
    assert cache.peek("b") == "newer"


def test_threads_getting_advancing_and_dropping_at_once() -> None:
    cache: UserCache[tuple[int, ...]] = UserCache(3)
    errors: list[Exception] = []

    def work(seed: int) -> None:
        try:
            for i in range(2000):
                user = f"u{(seed + i) % 5}"
                if i % 7 == 0:
                    cache.drop(user)
                elif i % 3 == 0:
                    cache.advance(user, (i - 1, i), lambda v: (*v, 1))
                else:
                    cache.get(user, i % 4, lambda: ())
        except Exception as exc:  # the test reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(cache) <= 3
    assert cache._building == {}  # every build's log was removed


def test_follow_brings_an_older_value_up_to_date_without_a_build() -> None:
    cache: UserCache[tuple[int, ...]] = UserCache(4)
    cache.get("a", 3, lambda: (1,))
    asked: list[tuple[int, tuple[int, ...]]] = []

    def follow(since: int, value: tuple[int, ...]) -> Callable[[tuple[int, ...]], Any] | None:
        asked.append((since, value))
        return lambda v: (*v, 2)

    def never() -> tuple[int, ...]:
        raise AssertionError("followed values are not built")

    assert cache.get("a", 5, never, follow) == (1, 2)
    assert asked == [(3, (1,))]
    assert cache.get("a", 5, never, follow) == (1, 2)  # kept at the new generation
    assert len(asked) == 1
    # a follow that cannot (None) builds, and so does an entry of a newer generation
    assert cache.get("a", 8, lambda: (7,), lambda since, value: None) == (7,)
    assert cache.peek("a") == (7,)
    assert cache.get("a", 6, lambda: (6,), follow) == (6,)  # an older snapshot: built
    assert len(asked) == 1
    assert cache.get("b", 1, lambda: (0,), follow) == (0,)  # nothing cached: built


def test_a_follow_overtaken_by_a_write_of_this_process_builds_instead() -> None:
    cache: UserCache[tuple[int, ...]] = UserCache(4)
    cache.get("a", 3, lambda: (1,))

    def follow(since: int, value: tuple[int, ...]) -> Callable[[tuple[int, ...]], Any] | None:
        cache.advance("a", (3, 4), lambda v: (*v, 40))  # this process wrote meanwhile
        return lambda v: (*v, 2)

    # the entry is not the one followed any more: its update is not applied to it
    assert cache.get("a", 5, lambda: (50,), follow) == (50,)
    assert cache.peek("a") == (50,)  # the build (of the newer snapshot) is kept
