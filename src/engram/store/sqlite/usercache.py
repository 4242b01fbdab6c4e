"""Per-user values derived from the database (a user's vector matrix, the names of their
speakers), kept in memory and checked against the user's generation counter, which every write
moves on. A value is valid for the generation it was made at; a write by this process
carries it to the next generation (``advance``); a write by anyone else leaves it stale, and it
is rebuilt on the next read."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["UserCache"]

T = TypeVar("T")


class UserCache(Generic[T]):
    """The values of the ``size`` most recently used users, each with its generation. Not
    thread-safe on its own: the store calls it under its lock."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[int, T]] = OrderedDict()

    def get(self, user_id: str, generation: int, build: Callable[[], T]) -> T:
        """The user's value at ``generation``, built (and kept) if missing or stale."""
        item = self._items.get(user_id)
        if item is None or item[0] != generation:
            item = (generation, build())
            self._items[user_id] = item
        self._items.move_to_end(user_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)  # least recently used
        return item[1]

    def advance(self, user_id: str, step: tuple[int, int], update: Callable[[T], T]) -> None:
        """Carry a value made at generation ``step[0]`` over a write of this process that moved
        the user from ``step[0]`` to ``step[1]``; any other value is dropped (someone else wrote
        in between). Generations come from a store-wide clock, so ``step[1]`` is not
        ``step[0] + 1`` when other users wrote meanwhile."""
        item = self._items.get(user_id)
        if item is None:
            return
        before, after = step
        if item[0] == before:
            self._items[user_id] = (after, update(item[1]))
        else:
            del self._items[user_id]

    def peek(self, user_id: str) -> T | None:
        """The user's value, whatever its generation (for inspection)."""
        item = self._items.get(user_id)
        return None if item is None else item[1]

    def drop(self, user_id: str) -> None:
        self._items.pop(user_id, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
