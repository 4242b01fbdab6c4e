"""The storage protocol. A backend stores records with one vector each, keeps a full-text index
and an audit trail, and enforces the caller's ``user_id`` on every operation itself."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from engram.embed.base import Vectors
from engram.errors import ConfigurationError
from engram.types import HistoryEvent, KeyRef, MemoryRecord, RecordFilter, StoreStats, Usage

__all__ = [
    "FactChange",
    "Job",
    "Note",
    "Retirement",
    "ScoredId",
    "SessionTail",
    "Sources",
    "Store",
    "check_still_bound",
    "prefix_end",
    "stale_records",
    "text_digest",
]

ScoredId = tuple[str, float]


@dataclass(frozen=True)
class SessionTail:
    """The condition of an append to a session: its last turns are still ``turns`` ((id, text)
    pairs, oldest first, the ones the new round and window keys were built from; empty: the
    session has no turns yet). Reading the tail, numbering the new turns and inserting them is
    then one atomic step, across threads and processes, and no key is built from a text that an
    update changed meanwhile."""

    user_id: str
    session_id: str
    turns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Sources:
    """The condition of an update: the texts of the records its keys are rebuilt from
    (id -> text) and the ids of the keys derived from the updated record, as they were read."""

    texts: Mapping[str, str]
    derived: frozenset[str]


@dataclass(frozen=True)
class Job:
    """A deferred extraction: turns of one session that the LLM has still to read. Stored in
    the same transaction as the turns (so a crash between the add and the extraction loses
    nothing) and deleted in the same transaction as the facts made from them."""

    user_id: str
    session_id: str
    turn_ids: tuple[str, ...]
    enqueued_at: datetime
    id: int = 0  # the store's id; 0 before it is stored
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Retirement:
    """A fact that stopped being true: ``valid_to`` in the world, retired by Engram at
    ``expired_at``, replaced by ``superseded_by`` (None: retired without a successor)."""

    record_id: str
    valid_to: datetime
    expired_at: datetime
    superseded_by: str | None


@dataclass(frozen=True)
class Note:
    """An audit event for a fact, with the reason for the decision."""

    record_id: str
    event: str  # ADD | UPDATE | MERGE | NOOP | SUPERSEDE
    reason: str
    old_text: str | None = None
    new_text: str | None = None


@dataclass(frozen=True)
class FactChange:
    """What one consolidation writes, all in one transaction: new facts (row ``i`` of the
    vectors given with the change belongs to ``add[i]``), rewritten fact texts (with vectors
    too, after the added rows), merged provenance (the whole new tuple), retirements, audit
    notes, the LLM usage to account, and the job it completes (deleted with it)."""

    user_id: str
    add: tuple[MemoryRecord, ...] = ()
    rewrite: tuple[tuple[str, str], ...] = ()
    provenance: tuple[tuple[str, tuple[str, ...]], ...] = ()
    retire: tuple[Retirement, ...] = ()
    notes: tuple[Note, ...] = ()
    usage: Usage = field(default_factory=Usage)
    purpose: str = "extract"
    job_id: int | None = None

    def split_notes(self) -> tuple[tuple[Note, ...], tuple[Note, ...]]:
        """(the notes that give their reason to an event the insert or the rewrite wrote
        itself: ADD, UPDATE; the notes that are events of their own: MERGE, NOOP,
        SUPERSEDE)."""
        written = tuple(n for n in self.notes if n.event in ("ADD", "UPDATE"))
        return written, tuple(n for n in self.notes if n.event not in ("ADD", "UPDATE"))


def text_digest(text: str) -> int:
    """A 64-bit digest of a record's text: what :meth:`Store.replace_vectors` compares to tell
    a record updated since it was embedded."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def stale_records(
    rows: Iterable[tuple[str, str, str]], given: Mapping[str, int], digests: Sequence[int]
) -> list[tuple[str, str]]:
    """Of the stored ``(id, user_id, text)`` rows, the ``(user_id, id)`` of those without a
    vector of their current text: not in ``given`` (id -> row), or text digest changed."""
    return [
        (user_id, record_id)
        for record_id, user_id, text in rows
        if record_id not in given or digests[given[record_id]] != text_digest(text)
    ]


def check_still_bound(where: str, recorded: str | None, name: str) -> None:
    """Raise unless the embedder the store records now (``recorded``) is ``name``, the one
    this store object bound: another process may have re-indexed it with another model
    (:meth:`Store.replace_vectors`) since."""
    if recorded is not None and recorded != name:
        raise ConfigurationError(
            f"{where} was re-indexed with embedder {recorded!r} since this process bound "
            f"{name!r}: open it again with the new embedder"
        )


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (in code point order,
    which is UTF-8 byte order); None if there is none (``prefix`` is empty, or all U+10FFFF).
    A key range ``prefix <= key < prefix_end(prefix)`` holds exactly the keys with the prefix."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            following = 0xE000 if last + 1 == 0xD800 else last + 1  # (no surrogates in text)
            return prefix[:-1] + chr(following)
        prefix = prefix[:-1]
    return None


class Store(Protocol):
    """What the write and read pipelines need from a backend. Every method is required."""

    def bind_embedder(self, name: str, dim: int) -> None:
        """Record which embedder the vectors come from; raise ``ConfigurationError`` if the
        store already holds vectors of another embedder or dimension. Every later write of this
        store object checks, in its transaction, that the store is still bound to ``name`` (a
        :meth:`replace_vectors` by another process) and raises ``ConfigurationError`` if not."""
        ...

    def replace_vectors(
        self, name: str, dim: int, ids: Sequence[str], vectors: Vectors, digests: Sequence[int]
    ) -> builtins.list[tuple[str, str]]:
        """Re-index under another embedder, all at once: in one transaction, give every record
        of every user the vector of its id in ``ids`` (row ``i`` of ``vectors``, made from a
        text whose :func:`text_digest` is ``digests[i]``) and bind the store to ``name`` /
        ``dim``. If a record has no vector there, or its text is no longer the one embedded
        (written or updated since it was read), write nothing and return the ``(user_id,
        id)`` of each such record. Ids of records deleted meanwhile are ignored. Searches see
        the old vectors or the new ones, never a mix."""
        ...

    def add(
        self,
        records: Sequence[MemoryRecord],
        vectors: Vectors,
        *,
        expect: SessionTail | None = None,
        jobs: Sequence[Job] = (),
    ) -> builtins.list[MemoryRecord]:
        """Insert records (row ``i`` of ``vectors`` belongs to ``records[i]``) in one
        transaction, skipping ids already stored; return the records actually inserted. The
        ``jobs`` are queued in the same transaction.

        With ``expect`` the insert is conditional, checked inside the write transaction: the
        session's last turns must still be ``expect.turns`` (ids and texts) and no id may be
        stored yet; otherwise raise ``ConflictError`` and write nothing."""
        ...

    def get_many(self, user_id: str, ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The caller's records among ``ids`` (in that order); others are silently absent."""
        ...

    def get_refs(self, user_id: str, ids: Sequence[str]) -> builtins.list[KeyRef]:
        """What ranking needs of the caller's records among ``ids`` (in that order; others are
        silently absent), as :meth:`get_many` would give it, without the rest of each record."""
        ...

    def get_vectors(self, user_id: str, ids: Sequence[str]) -> Vectors:
        """The stored vectors of the caller's records ``ids``, one row each, in that order; raise
        ``NotFoundError`` if any of them is not the caller's."""
        ...

    def last_turns(self, user_id: str, session_id: str, n: int) -> builtins.list[MemoryRecord]:
        """The ``n`` turns with the highest ``seq`` in a session, in conversation order (the
        last one is the turn that :class:`SessionTail` names)."""
        ...

    def derived_from(self, user_id: str, record_id: str) -> builtins.list[MemoryRecord]:
        """The records whose provenance includes ``record_id`` (rounds, windows, sentences,
        facts)."""
        ...

    def list(
        self,
        where: RecordFilter,
        *,
        limit: int,
        offset: int = 0,
        after: MemoryRecord | None = None,
    ) -> builtins.list[MemoryRecord]:
        """Records in scope, ordered by session, then ``seq``, then kind, then creation. With
        ``after`` (a record of a previous page), only records that come after it in that order
        (keyset pagination: pages neither skip nor repeat records when others are added or
        deleted meanwhile, even when ``after`` itself has been deleted)."""
        ...

    def update(
        self,
        user_id: str,
        texts: Sequence[tuple[str, str]],
        vectors: Vectors,
        *,
        drop: Sequence[str] = (),
        add: Sequence[MemoryRecord] = (),
        add_vectors: Vectors | None = None,
        expect: Sources | None = None,
    ) -> builtins.list[MemoryRecord]:
        """In one transaction: replace the text and vector of each ``(record_id, text)``,
        hard-delete the records in ``drop``, then insert ``add`` (row ``i`` of ``add_vectors``
        belongs to ``add[i]``); return the updated records. Raise ``NotFoundError`` (and change
        nothing) if a record to update or drop is outside the scope, ``ScopeError`` if a record to
        add belongs to another user. With ``expect``, raise ``ConflictError`` (and change
        nothing) unless the texts and the derived keys of the first record are as read."""
        ...

    def delete(self, user_id: str, record_id: str) -> builtins.list[str]:
        """Hard-delete a record and the index keys (rounds, windows, sentences) built from it;
        return the deleted ids. No deleted text may stay readable anywhere in the backend's
        files: the history keeps the events, with their texts removed."""
        ...

    def forget(self, user_id: str, *, session_id: str | None = None) -> int:
        """Hard-delete a user's records (or one session's), with every history row and index
        row of them (of a user: everything that names the user); return a count."""
        ...

    def history(self, user_id: str, record_id: str) -> builtins.list[HistoryEvent]:
        """The audit trail of a record, oldest first."""
        ...

    def speakers(self, user_id: str) -> frozenset[str]:
        """The names of the speakers of the user's turns (the turns' ``name``)."""
        ...

    def users(
        self, *, prefix: str = "", limit: int, after: str | None = None
    ) -> builtins.list[str]:
        """Up to ``limit`` distinct user ids that have records and start with ``prefix``, in
        ascending code point (UTF-8 byte) order, those above ``after`` only (keyset paging:
        pass the last id of a page). Crosses users: for the operator, not for a user's call."""
        ...

    def lexical_search(
        self, query: str, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        """BM25 over record key texts (:mod:`engram.store.lexical`) with the user's own
        statistics; higher scores are better."""
        ...

    def vector_search(
        self, vector: Vectors, where: RecordFilter, limit: int
    ) -> builtins.list[ScoredId]:
        """Cosine similarity over record vectors; higher scores are better."""
        ...

    def stats(self, user_id: str | None = None) -> StoreStats:
        """Record counts for one user or for everyone, with the job queue and LLM usage."""
        ...

    def consolidate(self, change: FactChange, vectors: Vectors) -> builtins.list[MemoryRecord]:
        """Commit one consolidation in one transaction (see :class:`FactChange`; ``vectors``:
        one row per added fact, then one per rewrite): insert, rewrite (an UPDATE event with
        the old text), set provenance, retire, write the notes to the history, add the usage
        to the user's totals, delete the job; return the facts added and rewritten. Raise
        ``NotFoundError`` and change nothing if a fact to change is not the user's, or the
        job is gone (another worker finished it)."""
        ...

    def claim_jobs(
        self, *, now: datetime, lease_seconds: float, limit: int, user_id: str | None = None
    ) -> builtins.list[Job]:
        """Lease up to ``limit`` queued jobs (oldest first) not leased by anyone at ``now``,
        for ``lease_seconds``, counting an attempt each: until the lease ends, no other
        worker (thread or process) claims them. A job whose worker died is claimed again
        once its lease has ended."""
        ...

    def release_job(self, job_id: int, *, error: str, retry_at: datetime) -> None:
        """Give a claimed job back after a failed attempt: it keeps ``error`` and may be
        claimed again from ``retry_at``."""
        ...

    def record_usage(self, user_id: str, purpose: str, usage: Usage) -> None:
        """Add LLM usage (an answer's, say) to the user's totals for ``purpose``."""
        ...

    def close(self) -> None: ...
