"""The light key references that ranking reads (``Store.get_refs``), remembered per user.

A search weighs ~800 candidate keys at 10k turns (300 from each retriever) and reads a
:class:`~engram.types.KeyRef` for each: ~8 ms of SQLite and row conversion per search, a third
of its work without the query embedding, and the same keys come back query after query. So the
refs read are kept per user in a :class:`RefMemo`, valid for the user's generation like the
vector matrix (:class:`~engram.store.sqlite.usercache.UserCache`): an ``add`` of this process
carries it over unchanged (an insert changes no stored record), any other write of this process
drops it, a write by another process leaves it stale. A memo holds at most ``MAX_REFS`` refs
(the oldest half goes when it is full), and at most ``USERS`` users have one.

The memo also remembers the record id of each rowid it has seen (lexical hits come as rowids).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

from engram.store.sqlite.ops import Generation, generation
from engram.store.sqlite.rows import owned_rows, ref_from_row
from engram.store.sqlite.usercache import Follow, UserCache
from engram.types import KeyRef

__all__ = ["MAX_REFS", "USERS", "RefMemo", "RefMemos"]

MAX_REFS = 50_000  # ~25-40 MB of refs (texts included) for one user at most
USERS = 64
_COLUMNS = "rowid, id, kind, provenance, name, timestamp, text, valid_from, valid_to, expired_at"


def _same(memo: RefMemo) -> RefMemo:
    return memo


def _kept_over_inserts(now: Generation) -> Follow[RefMemo]:
    """Another process's inserts change no stored ref: the memo is kept as it is."""
    return lambda since, _: _same if now.only_inserts_since(since) else None


class RefMemo:
    """One user's refs by id, and record ids by rowid. Thread-safe (a lock for changes;
    lookups are single dict reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refs: dict[str, KeyRef] = {}
        self.ids: dict[int, str] = {}

    def keep(self, rows: Iterable[tuple[int, KeyRef]]) -> None:
        with self._lock:
            for rowid, ref in rows:
                self.refs[ref.id] = ref
                self.ids[rowid] = ref.id
            if len(self.refs) > MAX_REFS:  # the oldest half (insertion order)
                for key in list(islice(self.refs, len(self.refs) // 2)):
                    del self.refs[key]
            self._trim_ids()

    def keep_ids(self, pairs: Iterable[tuple[int, str]]) -> None:
        with self._lock:
            self.ids.update(pairs)
            self._trim_ids()

    def _trim_ids(self) -> None:
        if len(self.ids) > MAX_REFS:
            for rowid in list(islice(self.ids, len(self.ids) // 2)):
                del self.ids[rowid]


class RefMemos:
    """The memos of the ``USERS`` most recently searched users."""

    def __init__(self, users: int = USERS) -> None:
        self._memos: UserCache[RefMemo] = UserCache(users)

    def memo(self, conn: sqlite3.Connection, user_id: str) -> RefMemo:
        """The user's memo at the generation of ``conn``'s snapshot."""
        now = generation(conn, user_id)
        return self._memos.get(user_id, now.gen, RefMemo, _kept_over_inserts(now))

    def prepare_follow(self, user_id: str, now: Generation) -> Callable[[], object] | None:
        """:meth:`UserCache.prepare_follow` for the user's memo, at ``now``."""
        return self._memos.prepare_follow(user_id, now.gen, _kept_over_inserts(now))

    def get_refs(self, conn: sqlite3.Connection, user_id: str, ids: Sequence[str]) -> list[KeyRef]:
        """``Store.get_refs`` in ``conn``'s snapshot: the user's refs of ``ids``, in order."""
        memo = self.memo(conn, user_id)
        known = memo.refs  # (another thread may evict meanwhile: take what is there first)
        got = {i: r for i in ids if (r := known.get(i)) is not None}
        missing = [i for i in dict.fromkeys(ids) if i not in got]
        if missing:
            rows = [(int(row[0]), ref_from_row(row[1:]))
                    for row in owned_rows(conn, user_id, _COLUMNS, "id", missing)]  # fmt: skip
            memo.keep(rows)
            got.update((ref.id, ref) for _, ref in rows)
        return [got[i] for i in ids if i in got]

    def advance(self, user_id: str, step: tuple[int, int]) -> None:
        """Carry the user's memo over an insert of this process (no stored ref changes)."""
        self._memos.advance(user_id, step, _same)

    def drop(self, user_id: str) -> None:
        """Forget the user's memo (records changed or went)."""
        self._memos.drop(user_id)

    def clear(self) -> None:
        self._memos.clear()
