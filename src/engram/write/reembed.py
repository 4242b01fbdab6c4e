"""Re-indexing a whole store under another embedder: every record's vector made again with the
new model, then swapped in at once (:meth:`~engram.store.base.Store.replace_vectors`), so a
search never ranks vectors of two models against each other.

Which vector each record gets is the write pipeline's rule: a turn, sentence, fact or summary
embeds its key text; a round or window key gets the normalised mean of its turns' vectors
(``span_vectors="mean"``, the default) or embeds its joined text (``"embed"``). The store is
read user by user in pages (keyset), each user's texts embedded in batches outside any
transaction (writes go on meanwhile; only the new vectors and a digest of each text are kept),
and the swap is one transaction. Records written or updated while the model ran are embedded
and the swap tried again, up to ``passes`` times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from engram.embed.base import Vectors, normalise_rows
from engram.errors import ConflictError
from engram.store.base import Store, text_digest
from engram.types import MemoryRecord, RecordFilter, RecordKind

__all__ = ["Progress", "ReembedReport", "reembed"]

Progress = Callable[[int, int], None]  # (records done, records in all)
SPANS = (RecordKind.ROUND, RecordKind.WINDOW)
_PAGE = 1000


@dataclass(frozen=True)
class ReembedReport:
    """What a re-index did: ``records`` given new vectors, ``texts`` sent to the model,
    ``passes`` swaps tried (more than one: records were written meanwhile), ``seconds``."""

    embedder: str
    dim: int
    records: int
    texts: int
    passes: int
    seconds: float


def _users(store: Store) -> Iterator[str]:
    after: str | None = None
    while users := store.users(limit=_PAGE, after=after):
        yield from users
        after = users[-1]


def _records(store: Store, user_id: str) -> list[MemoryRecord]:
    records: list[MemoryRecord] = []
    page: list[MemoryRecord] = []
    while page := store.list(RecordFilter(user_id), limit=_PAGE, after=page[-1] if page else None):
        records.extend(page)
    return records


class _Known(dict[str, tuple[Vectors, int]]):
    """Record id -> (new vector, digest of the text it was made from)."""

    def vector(self, record_id: str) -> Vectors:
        return self[record_id][0]

    def add(self, records: Sequence[MemoryRecord], vectors: Vectors) -> None:
        for r, v in zip(records, vectors, strict=True):
            self[r.id] = (v, text_digest(r.text))


def _new_vectors(
    records: Sequence[MemoryRecord],
    known: _Known,
    embed: Callable[[Sequence[str]], Vectors],
    span_mode: str,
    batch: int,
    progress: Progress | None,
    total: int,
) -> int:
    """Put a vector for each of ``records`` into ``known``; the number of texts embedded."""
    mean = [r for r in records if r.kind in SPANS and span_mode == "mean"]
    direct = [r for r in records if not (r.kind in SPANS and span_mode == "mean")]
    done = len(known)
    for start in range(0, len(direct), batch):
        chunk = direct[start : start + batch]
        known.add(chunk, embed([r.key_text for r in chunk]))
        done += len(chunk)
        if progress is not None:
            progress(done, max(done, total))
    texts = len(direct)
    orphans = [r for r in mean if not all(t in known for t in r.provenance)]
    if orphans:  # a span whose turns are gone (never in a consistent store): its own text
        known.add(orphans, embed([r.key_text for r in orphans]))
        texts += len(orphans)
    lost = {r.id for r in orphans}
    spans = [r for r in mean if r.id not in lost]
    if spans:
        means = [np.mean([known.vector(t) for t in r.provenance], axis=0) for r in spans]
        known.add(spans, normalise_rows(np.vstack(means)))
    if progress is not None:
        progress(len(known), max(len(known), total))
    return texts


def reembed(
    store: Store,
    embed: Callable[[Sequence[str]], Vectors],
    name: str,
    dim: int,
    *,
    span_mode: str = "mean",
    batch: int = 256,
    passes: int = 3,
    progress: Progress | None = None,
) -> ReembedReport:
    """Give every record of ``store`` a vector from ``embed`` (the embedder ``name`` of
    ``dim`` dimensions) and bind the store to it, in one swap; see the module's text."""
    start = time.perf_counter()
    known = _Known()  # all that is kept of a record
    total = sum(store.stats().records.values())
    texts = sum(
        _new_vectors(_records(store, user), known, embed, span_mode, batch, progress, total)
        for user in _users(store)
    )
    for attempt in range(1, passes + 1):
        ids = list(known)
        matrix = np.vstack([known.vector(i) for i in ids]) if ids else np.zeros((0, dim))
        digests = [known[i][1] for i in ids]
        missing = store.replace_vectors(name, dim, ids, matrix.astype(np.float32), digests)
        if not missing:
            return ReembedReport(
                name, dim, len(ids), texts, attempt, round(time.perf_counter() - start, 3)
            )
        if attempt < passes:  # written or updated while the model ran: again, and retry
            todo = _records_of(store, missing)
            total = len(known) + len(todo)
            texts += _new_vectors(todo, known, embed, span_mode, batch, progress, total)
    raise ConflictError(
        f"records kept being written while the store was re-indexed ({passes} tries); "
        "nothing was changed: try again when writes are quieter"
    )


def _records_of(store: Store, missing: Sequence[tuple[str, str]]) -> list[MemoryRecord]:
    by_user: dict[str, list[str]] = {}
    for user_id, record_id in missing:
        by_user.setdefault(user_id, []).append(record_id)
    return [r for user_id, ids in by_user.items() for r in store.get_many(user_id, ids)]
