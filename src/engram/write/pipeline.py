"""The write pipeline: new messages become turn, sentence, round and window records with their
vectors, appended to their session as one atomic step; an edited turn gets its derived keys
rebuilt.

Both are optimistic: the session's tail is read, the new records are numbered and built
after it, and the store inserts them only if the tail is still the same (``SessionTail``, checked
inside the write transaction). When another writer got there first, the records are built again
after the new tail; vectors of turns and sentences are computed once per call and reused, so a
retry costs no model call (with ``span_vectors="mean"``). Two writers appending to one session
at once therefore never share a ``seq`` or build a window over turns out of order, in one process
or several. The tail includes the texts of the turns the new keys are built from, so an append
racing an update never builds a window from a neighbour's old text; an update likewise rebuilds
its keys only if the record, its neighbours and the set of its keys are still as it read them
(``Sources``), else it reads and builds again (a model call per retry).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import numpy as np

from engram.embed.base import Vectors
from engram.errors import ConflictError, NotFoundError, StoreError
from engram.store.base import Job, SessionTail, Sources, Store
from engram.types import MemoryRecord, RecordKind
from engram.write.ingest import (
    build_rounds,
    build_sentences,
    build_turns,
    build_windows,
    record_id,
    rekey,
    span_vectors,
    turn_keys,
)
from engram.write.messages import Message

__all__ = ["MAX_ATTEMPTS", "WritePipeline"]

MAX_ATTEMPTS = 64  # appends lost to other writers of the same session before giving up
SpanVectors = Literal["mean", "embed"]
_SPAN_KINDS = (RecordKind.ROUND, RecordKind.WINDOW)  # keys whose text is rebuilt on update


class _Memo:
    """Vectors of texts computed during one call, so that a retried build embeds nothing
    twice."""

    def __init__(self, embed: Callable[[Sequence[str]], Vectors], dim: Callable[[], int]) -> None:
        self._embed, self._dim = embed, dim
        self._known: dict[str, Vectors] = {}

    def __call__(self, texts: Sequence[str]) -> Vectors:
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        if missing:
            self._known.update(zip(missing, self._embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self._dim()), dtype=np.float32)
        return np.vstack([self._known[t] for t in texts])


@dataclass(frozen=True)
class WritePipeline:
    """How records are built from messages: ``window`` turns per window key (0: none),
    sentence keys or not, and how round and window keys get their vectors."""

    store: Store
    embed: Callable[[Sequence[str]], Vectors]
    dim: Callable[[], int]  # the embedder's dimension, asked only when needed (loads a model)
    window: int
    sentences: bool
    span_mode: SpanVectors

    def append(
        self,
        messages: Sequence[Message],
        *,
        user_id: str,
        session_id: str,
        agent_id: str | None,
        default_time: datetime,
        now: datetime,
        queue: bool = False,
    ) -> list[MemoryRecord]:
        """Store the messages not stored yet at the end of their session; the turn record of
        every message, in order. With ``queue``, a :class:`Job` to extract facts from the new
        turns is queued in the same transaction."""
        keys = turn_keys(messages)
        ids = [record_id(user_id, session_id, RecordKind.TURN, k) for k in keys]
        memo = _Memo(self.embed, self.dim)
        for _ in range(MAX_ATTEMPTS):
            existing = {r.id: r for r in self.store.get_many(user_id, ids)}
            fresh = [
                (m, k) for m, k, i in zip(messages, keys, ids, strict=True) if i not in existing
            ]
            if not fresh:
                return [existing[i] for i in ids]
            previous = self.store.last_turns(user_id, session_id, max(1, self.window - 1))
            last = previous[-1] if previous else None
            turns = build_turns(
                fresh, user_id=user_id, session_id=session_id, agent_id=agent_id,
                first_seq=0 if last is None or last.seq is None else last.seq + 1,
                default_time=default_time, now=now,
            )  # fmt: skip
            tail = SessionTail(user_id, session_id, tuple((t.id, t.text) for t in previous))
            jobs = [Job(user_id, session_id, tuple(t.id for t in turns), now)] if queue else []
            try:
                self._store_new(turns, previous, now, memo, tail, jobs)
            except ConflictError:
                continue  # another writer appended to this session meanwhile: build again
            by_id = existing | {t.id: t for t in turns}
            return [by_id[i] for i in ids]
        raise ConflictError(
            f"session {session_id!r} kept changing while {MAX_ATTEMPTS} attempts to append "
            "to it were prepared; nothing was written, try again"
        )

    def _store_new(
        self,
        turns: Sequence[MemoryRecord],
        previous: Sequence[MemoryRecord],
        now: datetime,
        memo: _Memo,
        tail: SessionTail,
        jobs: Sequence[Job],
    ) -> None:
        """Embed new turns and their sentence keys; give round and window keys the mean of
        their turns' vectors (or embed their text); insert it all if the tail still holds."""
        embedded = [*turns, *(build_sentences(turns, now) if self.sentences else ())]
        spans = [
            *build_rounds(turns, previous[-1] if previous else None, now),
            *build_windows(turns, previous, self.window, now),
        ]
        if self.span_mode == "embed":
            records = [*embedded, *spans]
            vectors = memo([r.key_text for r in records])
        else:
            vectors = memo([r.key_text for r in embedded])
            known = dict(zip([t.id for t in turns], vectors[: len(turns)], strict=True))
            older = [t.id for t in previous if any(t.id in k.provenance for k in spans)]
            known.update(zip(older, self._vectors(turns[0].user_id, older), strict=True))
            records = [*embedded, *spans]
            vectors = np.vstack([vectors, span_vectors(spans, known, self.dim())])
        inserted = self.store.add(records, vectors, expect=tail, jobs=jobs)
        if len(inserted) != len(records):  # a conditional add inserts all or raises
            raise StoreError(f"{len(records) - len(inserted)} new records were not stored")

    def _vectors(self, user_id: str, ids: Sequence[str]) -> Vectors:
        """Stored vectors of turns that were read a moment ago; one deleted since is a
        conflict (build again), not an unknown record."""
        try:
            return self.store.get_vectors(user_id, ids)
        except NotFoundError as exc:
            raise ConflictError(f"a turn was deleted while the write was prepared: {exc}") from exc

    def update(self, user_id: str, record_id: str, text: str, *, now: datetime) -> MemoryRecord:
        """Replace a record's text; the round and window keys built from it are rebuilt and its
        sentence keys replaced, all in one transaction, if the record, its neighbours and its
        keys are still as they were read (else read and build again)."""
        for _ in range(MAX_ATTEMPTS):
            found = self.store.get_many(user_id, [record_id])
            if not found:
                raise NotFoundError(f"no record {record_id!r} for this user")
            try:
                return self._update_once(found[0], text, now)
            except ConflictError:
                continue  # the record, a neighbour or its keys changed meanwhile
        raise ConflictError(
            f"record {record_id!r} kept changing while {MAX_ATTEMPTS} updates were prepared"
        )

    def _update_once(self, current: MemoryRecord, text: str, now: datetime) -> MemoryRecord:
        user_id, rid = current.user_id, current.id
        new = replace(current, text=text)
        derived = self.store.derived_from(user_id, rid)
        spans = [k for k in derived if k.kind in _SPAN_KINDS]
        others = list({i: None for k in spans for i in k.provenance if i != rid})
        neighbours = self.store.get_many(user_id, others)
        sources = [new, *neighbours]
        expect = Sources(
            texts={rid: current.text, **{r.id: r.text for r in neighbours}},
            derived=frozenset(k.id for k in derived),
        )
        old_sentences = [k.id for k in derived if k.kind is RecordKind.SENTENCE]
        rebuild = new.kind is RecordKind.TURN and (self.sentences or bool(old_sentences))
        sentences = build_sentences([new], now) if rebuild else []
        changes = [(rid, new.text), *((k.id, rekey(k, sources)) for k in spans)]
        embed_spans = self.span_mode == "embed"
        span_texts = [t for _, t in changes[1:]] if embed_spans else []
        fresh = self.embed([new.key_text, *(k.key_text for k in sentences), *span_texts])
        fresh, span_vecs = fresh[: 1 + len(sentences)], fresh[1 + len(sentences) :]
        if not embed_spans:
            stored = self._vectors(user_id, others)
            known = dict(zip([rid, *others], np.vstack([fresh[:1], stored]), strict=True))
            span_vecs = span_vectors(spans, known, self.dim())
        return self.store.update(
            user_id, changes, np.vstack([fresh[:1], span_vecs]),
            drop=old_sentences, add=sentences, add_vectors=fresh[1:], expect=expect,
        )[0]  # fmt: skip
