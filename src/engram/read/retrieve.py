"""The read pipeline: retrieve keys from each retriever, map keys to the turns they index, fuse,
weight by recency, and explain each hit."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from engram.embed.base import Vectors
from engram.read.config import SearchConfig
from engram.read.fusion import (
    addressed_role,
    mask_names,
    question_factor,
    recency_factor,
    role_factor,
    rrf,
    speaker_factor,
    weighted_fusion,
    words,
)
from engram.store.base import ScoredId, Store
from engram.temporal import TimeWindow, resolve_time_window, time_factor
from engram.types import (
    Hit,
    KeyRef,
    MemoryRecord,
    RecordFilter,
    RecordKind,
    RetrieverScore,
    SessionHit,
    valid_at,
)

__all__ = ["aggregate_sessions", "anchored_window", "keys_to_values", "search"]


@dataclass(frozen=True)
class ValueRanking:
    """One retriever's ranking of values (turns), with each value's best key score."""

    order: list[str]
    scores: dict[str, float]
    keys: dict[str, list[str]]
    ranks: dict[str, int]  # 1-based position in ``order``


def _values_of(key: KeyRef, own: bool = False) -> tuple[str, ...]:
    if own or key.kind is RecordKind.TURN:
        return (key.id,)
    return key.provenance


def keys_to_values(
    hits: Sequence[ScoredId], keys: Mapping[str, KeyRef], *, decay: float = 0.0, own: bool = False
) -> ValueRanking:
    """Turn a ranked list of key ids (best first) into a ranking of the values they point to.
    A value scores ``s1 + decay * s2 + decay**2 * s3 + ...`` over the scores of its keys, best
    first: with ``decay=0`` the score of its best key; with ``decay>0`` a turn found through
    its own key and its windows outranks a neighbour carried along by one window. With
    ``own``, every key is its own value (a search for facts)."""
    scores: dict[str, float] = {}
    found: dict[str, int] = {}
    matched: dict[str, list[str]] = {}
    for key_id, score in hits:
        key = keys.get(key_id)
        if key is None:
            continue
        for value in _values_of(key, own):
            n = found.get(value, 0)
            if n == 0 or decay > 0.0:
                scores[value] = scores.get(value, 0.0) + score * decay**n
            found[value] = n + 1
            matched.setdefault(value, []).append(key_id)
    order = sorted(scores, key=lambda v: -scores[v])  # stable: ties keep first-found order
    return ValueRanking(order, scores, matched, {v: i for i, v in enumerate(order, start=1)})


def _fuse(rankings: Mapping[str, ValueRanking], config: SearchConfig) -> list[tuple[str, float]]:
    weights = dict(config.weights)
    if config.fusion == "weighted":
        return weighted_fusion({n: r.scores for n, r in rankings.items()}, weights=weights)
    return rrf({n: r.order for n, r in rankings.items()}, k=config.rrf_k, weights=weights)


def _retrieve(
    store: Store, embed_query: Callable[[str], Vectors], query: str, where: RecordFilter,
    config: SearchConfig, *, sentences: bool = True,
) -> dict[str, list[ScoredId]]:  # fmt: skip
    retrieved: dict[str, list[ScoredId]] = {}
    if config.lexical:
        retrieved["lexical"] = store.lexical_search(query, where, config.candidates)
    if not (config.semantic or config.sentence):
        return retrieved
    masked = mask_names(query, store.speakers(where.user_id)) if config.mask_speakers else query
    vector = embed_query(masked)
    if config.semantic:
        retrieved["semantic"] = store.vector_search(vector, where, config.candidates)
    if config.sentence and sentences:
        of_turns = replace(where, kinds=(RecordKind.SENTENCE, RecordKind.TURN))
        retrieved["sentence"] = store.vector_search(vector, of_turns, config.candidates)
    return retrieved


def search(
    store: Store,
    embed_query: Callable[[str], Vectors],
    query: str,
    scope: RecordFilter,
    *,
    limit: int,
    config: SearchConfig,
    now: datetime,
    as_of: datetime | None = None,
    facts: bool = False,
) -> list[Hit]:
    """Search one user's memory and return up to ``limit`` turns (with ``facts``: facts),
    best first. Keys and results are what was part of memory at ``as_of``
    (:func:`~engram.types.valid_at`; None: now, so retired facts are no keys)."""
    kinds = (RecordKind.FACT,) if facts else config.key_kinds
    where = RecordFilter(scope.user_id, scope.agent_id, scope.session_id, kinds)
    retrieved = _retrieve(store, embed_query, query, where, config, sentences=not facts)
    key_ids = list(dict.fromkeys(rid for hits in retrieved.values() for rid, _ in hits))
    keys = {r.id: r for r in store.get_refs(scope.user_id, key_ids) if valid_at(r, as_of)}
    rankings = {  # a turn scores its best sentence: the sentences of one turn are one text
        name: keys_to_values(
            hits, keys, decay=0.0 if name == "sentence" else config.key_decay, own=facts
        )
        for name, hits in retrieved.items()
    }
    fused = _fuse(rankings, config)

    def refs_of(values: list[str]) -> dict[str, KeyRef]:
        found = store.get_refs(scope.user_id, [v for v in values if v not in keys])
        return {r.id: r for r in found if valid_at(r, as_of)}

    # the newest candidate key anchors a question's dates when no memory is as recent as they
    latest = (
        max((r.timestamp for r in keys.values()), default=None) if config.time_fallback else None
    )
    rescorer = _rescorer(query, config, now, latest)
    wanted = addressed_role(words(query)) if config.role_weight and not facts else None
    top = best_rescored(
        fused, keys, refs_of, rescorer, max(limit, config.role_depth) if wanted else limit
    )
    records = {r.id: r for r in store.get_many(scope.user_id, [ref.id for _, ref in top])}
    if wanted:  # a key reference carries no role: the factor reads the records of the top
        top = [
            (score * role_factor(records[ref.id].role, wanted, weight=config.role_weight), ref)
            for score, ref in top
            if ref.id in records
        ]
        top.sort(key=lambda item: (-item[0], item[1].id))
        top = top[:limit]
    return [_hit(records[ref.id], score, rankings) for score, ref in top if ref.id in records]


def anchored_window(query: str, now: datetime, latest: datetime | None) -> TimeWindow | None:
    """The period ``query`` names, resolved against ``now``; if every memory is older than its
    start (a question asked long after the conversations it is about, without a question date:
    an imported chat log asked today about "last Saturday"), resolved against the ``latest``
    memory instead, so relative expressions keep their meaning in the memory's own timeline."""
    window = resolve_time_window(query, now)
    if window is not None and latest is not None and latest < window.start:
        return resolve_time_window(query, latest)
    return window


_CHUNK = 64  # fused values whose refs are read at a time, best first


def best_rescored(
    fused: Sequence[tuple[str, float]],
    keys: Mapping[str, KeyRef],
    refs_of: Callable[[list[str]], dict[str, KeyRef]],
    rescorer: tuple[Callable[[KeyRef], float], float],
    limit: int,
) -> list[tuple[float, KeyRef]]:
    """The ``limit`` best (fused score x factor, ref) pairs, ties by id: the same as rescoring
    every fused value, but ``fused`` (best first) is read in chunks and stops once no value
    left can reach the top, since a score times the factor's ``ceiling`` bounds its final
    score (in floats too: the ceiling is the product of each factor's maximum, in the same
    order; factors are positive, so 0 bounds a negative score). A value without a ref
    (``keys``, then ``refs_of``) is skipped."""
    rescore, ceiling = rescorer
    top: list[tuple[float, KeyRef]] = []
    for start in range(0, len(fused), _CHUNK) if limit > 0 else ():
        chunk = fused[start : start + _CHUNK]
        if len(top) == limit and max(chunk[0][1] * ceiling, 0.0) < top[-1][0]:
            break
        refs = refs_of([v for v, _ in chunk])
        for value, score in chunk:
            ref = keys.get(value) or refs.get(value)
            if ref is not None:
                top.append((score * rescore(ref), ref))
        top.sort(key=lambda item: (-item[0], item[1].id))
        del top[limit:]
    return top


def _rescorer(
    query: str, config: SearchConfig, now: datetime, latest: datetime | None = None
) -> tuple[Callable[[KeyRef], float], float]:
    """The product of the recency, speaker, question and time factors for a record, and the
    largest value it can take (the product of each factor's maximum, in the same order). The
    role factor comes after, on the records of the top (a key reference carries no role)."""
    query_words = words(query)
    window = anchored_window(query, now, latest) if config.time_weight else None
    ceiling = (
        (1.0 + config.recency_weight if config.recency_weight else 1.0)
        * (1.0 + config.speaker_weight if config.speaker_weight else 1.0)
        * 1.0
        * (1.0 + config.time_weight * window.strength if window and config.time_weight else 1.0)
    )

    def factor(record: KeyRef) -> float:
        age = (now - record.timestamp).total_seconds() / 86400.0
        return (
            recency_factor(
                age, weight=config.recency_weight, half_life_days=config.recency_half_life_days
            )
            * speaker_factor(query_words, record.name, weight=config.speaker_weight)
            * question_factor(record.text, penalty=config.question_penalty)
            * time_factor(
                record.timestamp, window, weight=config.time_weight,
                tolerance_days=config.time_tolerance_days,
            )
        )  # fmt: skip

    return factor, ceiling


def _hit(record: MemoryRecord, score: float, rankings: Mapping[str, ValueRanking]) -> Hit:
    sources = {}
    matched: list[str] = []
    for name, ranking in rankings.items():
        if record.id in ranking.scores:
            rank = ranking.ranks[record.id]
            sources[name] = RetrieverScore(rank=rank, score=ranking.scores[record.id])
            matched.extend(k for k in ranking.keys[record.id] if k not in matched)
    return Hit(record=record, score=score, sources=sources, matched_keys=tuple(matched))


def aggregate_sessions(
    hits: Sequence[Hit], *, method: str = "max", top: int = 3
) -> list[SessionHit]:
    """Group hits by session: a session scores its best hit (``max``) or the sum of its ``top``
    best hits (``sum``). Sessions best first; hits within a session keep their order."""
    groups: dict[str, list[Hit]] = {}
    for hit in hits:
        groups.setdefault(hit.record.session_id or "", []).append(hit)
    sessions = []
    for session_id, members in groups.items():
        best = sorted((h.score for h in members), reverse=True)
        score = best[0] if method == "max" else sum(best[:top])
        sessions.append(SessionHit(session_id=session_id, score=score, hits=tuple(members)))
    sessions.sort(key=lambda s: (-s.score, s.session_id))
    return sessions
