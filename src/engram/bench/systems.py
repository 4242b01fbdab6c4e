"""The systems a benchmark run compares, each behind the same two steps: index a corpus of
sessions, then rank turn ids (and session ids) for a question.

- ``engram:<preset>``: Engram through its public API only (``Memory.open(":memory:")``, ``add``,
  ``search``, ``search_sessions``) with a named search preset;
- ``bm25``: plain BM25 (the ``bm25s`` package: lower-cased word tokens, English stop words, no
  stemming) over the same turn texts;
- ``dense``: plain cosine similarity with the same embedder over the same turn texts.

The baselines index ``"<speaker name>: <text>"`` where a name is known, as Engram does, so that
the three differ only in how they retrieve. Their session rankings put each session at the rank
of its best turn.

Input modes of an Engram system (``engram:<preset>`` is ``named``, ``engram:<preset>/plain`` is
``plain``): ``named`` sends each turn with its role, its speaker's name in the ``name`` field and
each question with its date; ``plain`` sends what most chat apps would: the role only, the
speaker inside the text (``"Caroline: I went to a support group"``) and no question date. The
baselines see the same ``"name: text"`` string either way, so they run once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engram import PRESETS, Embedder, HashEmbedder, Memory, SentenceTransformerEmbedder
from engram.bench.corpus import CorpusSession, CorpusTurn, Question, dedupe
from engram.bench.metrics import sessions_from_turns
from engram.embed import Vectors, embed_texts
from engram.embed.base import WrappingEmbedder
from engram.errors import ConfigurationError, EmbeddingError

__all__ = [
    "BASELINES",
    "MODES",
    "PLAIN",
    "BM25System",
    "DenseSystem",
    "EmbedderSpec",
    "EngramSystem",
    "Index",
    "MemoEmbedder",
    "Ranking",
    "System",
    "embedder_name",
    "make_embedder",
    "make_system",
    "system_names",
]

BASELINES = ("bm25", "dense")
MODES = ("named", "plain")
PLAIN = "/plain"  # the suffix of an Engram system's name in plain mode
USER_ID = "bench"

# An embedder object, or a name: "hash" (the fast fake, tests only), "bundled" / None (the
# bundled all-MiniLM-L6-v2), or a sentence-transformers model name or directory.
EmbedderSpec = Embedder | str | None


def make_embedder(spec: EmbedderSpec) -> Embedder:
    if spec is None or spec == "bundled":
        return SentenceTransformerEmbedder()
    if spec == "hash":
        return HashEmbedder()
    if isinstance(spec, str):
        return SentenceTransformerEmbedder(spec)
    return spec


def embedder_name(spec: EmbedderSpec) -> str:
    """The model name, without loading the model."""
    return make_embedder(spec).name


class MemoEmbedder(WrappingEmbedder):
    """Remembers the vectors of the texts it embeds while :attr:`recording` is true, so that
    Engram and the dense baseline embed each turn of a corpus once, and corpora that share
    texts (LongMemEval's haystacks share sessions) embed them once per process. Record while
    indexing, not while asking (each system then pays for embedding its questions, and latencies
    compare); call :meth:`trim` between corpora to keep at most ``keep`` vectors, the most
    recently used. While not recording, texts go to ``asking`` (default ``inner``): the model
    itself when ``inner`` is a disk cache, so questions are never served from one."""

    def __init__(self, inner: Embedder, asking: Embedder | None = None, *, keep: int = 0) -> None:
        self.inner = inner
        self.asking = asking or inner
        self.recording = True
        self.keep = keep
        self._memo: OrderedDict[str, np.ndarray[Any, np.dtype[np.float32]]] = OrderedDict()

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        for text in texts:
            if text in self._memo:
                self._memo.move_to_end(text)
        missing = dedupe(t for t in texts if t not in self._memo)
        fresh: dict[str, np.ndarray[Any, np.dtype[np.float32]]] = {}
        if missing:
            model = self.inner if self.recording else self.asking
            vectors = np.asarray(model.embed_batch(missing), dtype=np.float32)
            if vectors.shape != (len(missing), self.dim):
                raise EmbeddingError(f"embedder {self.name!r} returned shape {vectors.shape}")
            fresh = dict(zip(missing, vectors, strict=True))
            if self.recording:
                self._memo.update(fresh)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[t] if t in self._memo else fresh[t] for t in texts])

    def trim(self) -> None:
        """Forget all but the ``keep`` most recently used vectors."""
        while len(self._memo) > self.keep:
            self._memo.popitem(last=False)


@dataclass(frozen=True)
class Ranking:
    turns: tuple[str, ...]
    sessions: tuple[str, ...] = ()


class Index(Protocol):
    def rank(self, question: Question, limit: int) -> Ranking: ...

    def close(self) -> None: ...


class System(Protocol):
    @property
    def name(self) -> str: ...

    def build(self, sessions: Sequence[CorpusSession]) -> Index: ...


def _turn_texts(sessions: Sequence[CorpusSession]) -> tuple[list[str], list[str], dict[str, str]]:
    ids = [t.id for s in sessions for t in s.turns]
    texts = [t.key_text for s in sessions for t in s.turns]
    session_of = {t.id: s.id for s in sessions for t in s.turns}
    return ids, texts, session_of


class _EngramIndex:
    def __init__(self, memory: Memory, preset: str, sessions: bool, plain: bool = False) -> None:
        self.memory = memory
        self.preset = preset
        self.sessions = sessions
        self.plain = plain

    def rank(self, question: Question, limit: int) -> Ranking:
        config = PRESETS[self.preset]
        date = None if self.plain else question.date
        hits = self.memory.search(
            question.text, user_id=USER_ID, limit=limit, question_date=date, config=config
        )
        turns = dedupe(mid for hit in hits for mid in hit.record.message_ids)
        ranked: list[str] = []
        if self.sessions:
            found = self.memory.search_sessions(
                question.text, user_id=USER_ID, limit=limit, question_date=date, config=config
            )
            ranked = [s.session_id for s in found]
        return Ranking(tuple(turns), tuple(ranked))

    def close(self) -> None:
        self.memory.close()


class EngramSystem:
    """Engram with one search preset, one in-memory store per corpus; ``plain``: the plain input
    mode (role only, the speaker inside the text, no question date)."""

    def __init__(
        self, preset: str, embedder: Embedder, *, sessions: bool = False, plain: bool = False
    ) -> None:
        if preset not in PRESETS:
            raise ConfigurationError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        self.preset = preset
        self.embedder = embedder
        self.sessions = sessions
        self.plain = plain

    @property
    def name(self) -> str:
        return f"engram:{self.preset}{PLAIN if self.plain else ''}"

    def _message(self, turn: CorpusTurn) -> dict[str, Any]:
        if self.plain:
            return {"role": turn.role, "content": turn.key_text, "id": turn.id}
        message: dict[str, Any] = {"role": turn.role, "content": turn.text, "id": turn.id}
        if turn.name:
            message["name"] = turn.name
        return message

    def build(self, sessions: Sequence[CorpusSession]) -> Index:
        memory = Memory.open(":memory:", embedder=self.embedder)
        for session in sessions:
            messages = [self._message(turn) for turn in session.turns]
            if messages:
                memory.add(
                    messages, user_id=USER_ID, session_id=session.id, session_date=session.date
                )
        return _EngramIndex(memory, self.preset, self.sessions, self.plain)


Scores = np.ndarray[Any, np.dtype[np.float64]]


class _ScoredIndex:
    """A baseline's index: a score for every turn, ranked best first (ties: corpus order)."""

    def __init__(
        self, sessions: Sequence[CorpusSession], score: Callable[[str], Scores],
        *, positive_only: bool,
    ) -> None:  # fmt: skip
        self.ids, _, self.session_of = _turn_texts(sessions)
        self.score = score
        self.positive_only = positive_only

    def rank(self, question: Question, limit: int) -> Ranking:
        if not self.ids:
            return Ranking(())
        scores = self.score(question.text)
        order = np.argsort(-scores, kind="stable")
        if self.positive_only:
            order = order[scores[order] > 0]
        ranked = [self.ids[i] for i in order]
        sessions = sessions_from_turns(ranked, self.session_of)[:limit]
        return Ranking(tuple(ranked[:limit]), tuple(sessions))

    def close(self) -> None:
        return None


def _bm25_scorer(texts: list[str]) -> Callable[[str], Scores]:
    import bm25s

    retriever = bm25s.BM25()
    if texts:
        retriever.index(
            bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False
        )

    def score(query: str) -> Scores:
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        if not texts or not tokens or not tokens[0]:
            return np.zeros(len(texts))
        return np.asarray(retriever.get_scores(tokens[0]), dtype=np.float64)

    return score


def _dense_scorer(
    texts: list[str], embedder: Embedder, query_embedder: Embedder
) -> Callable[[str], Scores]:
    vectors = embed_texts(embedder, texts)

    def score(query: str) -> Scores:
        return np.asarray(vectors @ embed_texts(query_embedder, [query])[0], dtype=np.float64)

    return score


class BM25System:
    name = "bm25"

    def build(self, sessions: Sequence[CorpusSession]) -> Index:
        texts = _turn_texts(sessions)[1]
        return _ScoredIndex(sessions, _bm25_scorer(texts), positive_only=True)


class DenseSystem:
    """``query_embedder`` (default: ``embedder``) embeds the questions: pass the unmemoised
    embedder so that the query latency includes embedding the question."""

    name = "dense"

    def __init__(self, embedder: Embedder, query_embedder: Embedder | None = None) -> None:
        self.embedder = embedder
        self.query_embedder = query_embedder or embedder

    def build(self, sessions: Sequence[CorpusSession]) -> Index:
        texts = _turn_texts(sessions)[1]
        return _ScoredIndex(
            sessions, _dense_scorer(texts, self.embedder, self.query_embedder), positive_only=False
        )


def make_system(
    name: str, embedder: Embedder, *, sessions: bool = False, query_embedder: Embedder | None = None
) -> System:
    """``"engram:<preset>"`` (or a bare preset name; ``"engram:<preset>/plain"`` in plain mode),
    ``"bm25"`` or ``"dense"``."""
    if name == "bm25":
        return BM25System()
    if name == "dense":
        return DenseSystem(embedder, query_embedder)
    preset = name.removeprefix("engram:")
    plain = preset.endswith(PLAIN)
    return EngramSystem(preset.removesuffix(PLAIN), embedder, sessions=sessions, plain=plain)


def system_names(presets: Sequence[str], modes: Sequence[str]) -> list[str]:
    """The Engram systems of some presets in some input modes, preset by preset."""
    suffix = {"named": "", "plain": PLAIN}
    return [f"engram:{p.removeprefix('engram:')}{suffix[m]}" for p in presets for m in modes]
