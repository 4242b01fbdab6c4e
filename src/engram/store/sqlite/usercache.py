"""Per-user values derived from the database (a user's vector matrix, the names of their
speakers), kept in memory and checked against the user's generation counter, which every write
moves on. A value is valid for the generation it was made at; a write by this process
carries it to the next generation (``advance``); a write by anyone else leaves it stale, and it
is rebuilt on the next read, or followed: brought up to date by reading only what changed, where
the caller can (another process's inserts, ``get(follow=...)``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Follow", "UserCache"]

T = TypeVar("T")


_Step = tuple[tuple[int, int], Callable[[T], T]] | None  # an advance; None: the user was dropped
# (generation, value) of an entry -> an update to the snapshot's generation, or None
Follow = Callable[[int, T], Callable[[T], T] | None]


class _Log(Generic[T]):
    """The advances reported while one value is built (compared by identity)."""

    def __init__(self) -> None:
        self.steps: list[_Step[T]] = []


class UserCache(Generic[T]):
    """The values of the ``size`` most recently used users, each with its generation.

    Thread-safe: a small lock guards the entries and is never held while a value is built
    (that reads the database). An update passed to :meth:`advance` runs under it, so that no
    reader finds the new generation before the value has followed the write; it must wait for
    nothing but locks taken after this one (a matrix's own lock)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[int, T]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, list[_Log[T]]] = {}  # user -> the logs of its builds

    def get(
        self, user_id: str, generation: int, build: Callable[[], T],
        follow: Follow[T] | None = None,
    ) -> T:  # fmt: skip
        """The user's value at ``generation``, built (and kept) if missing or stale.

        ``build`` runs outside the lock and must make the value of exactly ``generation`` (read
        both in one snapshot). The writes of this process that :meth:`advance` reports while
        it runs are logged and carried over to the new value when it is kept, so that a long
        load is not stale on arrival. If the entry changed meanwhile (a writer carried it,
        another reader built one), that one stays: one of the same generation is shared, one
        of another is left alone and the value built here serves this call only.

        ``follow`` is asked first when the entry is older than ``generation`` (another process
        wrote): given the entry's generation and value, it reads what changed since (in the
        same snapshot as ``generation``) and returns an update that brings the value to
        ``generation``, or None if it cannot (then ``build``). The update runs under the lock,
        and only if the entry is still the one it followed; else the value is built."""
        with self._lock:
            item = self._items.get(user_id)
            if item is not None and item[0] == generation:
                self._items.move_to_end(user_id)
                return item[1]
        apply = None if follow is None else self.prepare_follow(user_id, generation, follow)
        followed = None if apply is None else apply()
        if followed is not None:
            return followed
        return self._build(user_id, generation, build)

    def _build(self, user_id: str, generation: int, build: Callable[[], T]) -> T:
        """:meth:`get` for a value missing or stale: build it, carry it over the writes of this
        process that committed meanwhile, keep it unless the entry changed meanwhile."""
        with self._lock:
            item = self._items.get(user_id)
            if item is not None and item[0] == generation:
                self._items.move_to_end(user_id)
                return item[1]
            log: _Log[T] = _Log()
            self._building.setdefault(user_id, []).append(log)
        try:
            value = build()
        finally:
            with self._lock:
                logs = self._building[user_id]
                logs.remove(log)
                if not logs:
                    del self._building[user_id]
        with self._lock:
            current = self._items.get(user_id)
            if current is not item:
                return current[1] if current is not None and current[0] == generation else value
            for step in log.steps:
                if step is None:  # dropped meanwhile: keep nothing
                    return value
                if step[0][0] == generation:  # (an earlier write is in the snapshot already)
                    generation, value = step[0][1], step[1](value)
            self._items[user_id] = (generation, value)
            self._items.move_to_end(user_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)  # least recently used
        return value

    def advance(self, user_id: str, step: tuple[int, int], update: Callable[[T], T]) -> None:
        """Carry a value made at generation ``step[0]`` over a write of this process that moved
        the user from ``step[0]`` to ``step[1]``; any other value is dropped (someone else wrote
        in between). Generations come from a store-wide clock, so ``step[1]`` is not
        ``step[0] + 1`` when other users wrote meanwhile. Writers call it in commit order."""
        with self._lock:
            for log in self._building.get(user_id, ()):
                log.steps.append((step, update))
            item = self._items.get(user_id)
            if item is None:
                return
            before, after = step
            if item[0] == before:
                self._items[user_id] = (after, update(item[1]))
            else:
                del self._items[user_id]

    def prepare_follow(
        self, user_id: str, generation: int, follow: Follow[T]
    ) -> Callable[[], T | None] | None:
        """If the user's entry is older than ``generation``, ask ``follow`` (outside the lock)
        for the update that brings it there, and return what applies it: under the lock, and
        only if the entry is still the one followed, it keeps and returns the value at
        ``generation``, else returns None. None if there is nothing to follow, or ``follow``
        cannot. The update is read in the caller's snapshot; it may be applied later (a write
        reads it in its transaction and applies it after its commit)."""
        with self._lock:
            item = self._items.get(user_id)
        if item is None or item[0] >= generation:
            return None
        update = follow(item[0], item[1])
        if update is None:
            return None

        def apply() -> T | None:
            with self._lock:
                if self._items.get(user_id) is not item:
                    return None
                value = update(item[1])
                self._items[user_id] = (generation, value)
                self._items.move_to_end(user_id)
                return value

        return apply

    def peek(self, user_id: str) -> T | None:
        """The user's value, whatever its generation (for inspection)."""
        with self._lock:
            item = self._items.get(user_id)
        return None if item is None else item[1]

    def drop(self, user_id: str) -> None:
        with self._lock:
            self._items.pop(user_id, None)
            for log in self._building.get(user_id, ()):
                log.steps.append(None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            for logs in self._building.values():
                for log in logs:
                    log.steps.append(None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
