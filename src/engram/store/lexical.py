"""Backend-independent lexical scoring: the tokenizer, the query terms and Okapi BM25.

Every backend keeps a per-user inverted index of the stems this module makes (term, document,
term frequency, document length) and per-user totals (documents, tokens), and scores with
:func:`bm25_weight` and :func:`idf`. The statistics are the user's own: one user's scores and
ranks never depend on another user's text (a global IDF would leak across tenants, and let one
user's writes reorder another's results).

The tokenizer follows SQLite FTS5's ``porter unicode61 remove_diacritics 2``, which Engram used
before: lower-cased runs of letters and digits, Latin diacritics removed, Porter stems (tokens
of 3 to 64 characters). The scoring formula is FTS5's ``bm25()`` (k1 = 1.2, b = 0.75, an IDF of
``log((N - n + 0.5) / (n + 0.5))`` floored at 1e-6), so scores are on the scale the fusion
settings were tuned on.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

from engram.store.text import query_terms

__all__ = [
    "K1",
    "B",
    "LexicalDoc",
    "bm25_reference",
    "bm25_weight",
    "idf",
    "lexical_doc",
    "query_stems",
    "stem",
    "tokenize",
]

K1 = 1.2
B = 0.75
_MIN_IDF = 1e-6
_TOKEN = re.compile(r"[^\W_]+")
_DIACRITICS = re.compile("[\u0300-\u036f]+")  # the combining marks of Latin (and Greek) letters
_STEMMER = snowballstemmer.stemmer("porter")
_STEMMING = threading.Lock()  # a stemmer keeps the word it works on in itself: one at a time


@lru_cache(maxsize=200_000)
def stem(token: str) -> str:
    """The Porter stem of a lower-cased token; tokens shorter than 3 or longer than 64
    characters are kept as they are (as FTS5's porter tokenizer does). Thread-safe."""
    if not 3 <= len(token) <= 64:
        return token
    with _STEMMING:
        return str(_STEMMER.stemWord(token))


def _fold(text: str) -> str:
    folded = text.lower()
    if folded.isascii():
        return folded
    return unicodedata.normalize("NFC", _DIACRITICS.sub("", unicodedata.normalize("NFD", folded)))


def tokenize(text: str) -> list[str]:
    """The stems of ``text``, in order, stopwords included (a document's length counts them)."""
    return [stem(token) for token in _TOKEN.findall(_fold(text))]


def query_stems(query: str) -> list[str]:
    """The distinct stems of a query's terms (stopwords dropped unless every word is one)."""
    stems = (s for term in query_terms(query) for s in tokenize(term))
    return list(dict.fromkeys(stems))


@dataclass(frozen=True)
class LexicalDoc:
    """What the index keeps of one document: its length in tokens and its term frequencies."""

    length: int
    terms: Mapping[str, int]


def lexical_doc(text: str) -> LexicalDoc:
    tokens = tokenize(text)
    return LexicalDoc(len(tokens), Counter(tokens))


def idf(docs: int, df: int) -> float:
    """Inverse document frequency of a term found in ``df`` of a user's ``docs`` documents."""
    value = math.log((docs - df + 0.5) / (df + 0.5))
    return value if value > 0.0 else _MIN_IDF


def bm25_weight(tf: int, length: int, avgdl: float) -> float:
    """The BM25 term-frequency component of one term in one document (times IDF: its score)."""
    norm = 1.0 - B + B * (length / avgdl if avgdl > 0 else 0.0)
    return tf * (K1 + 1.0) / (tf + K1 * norm)


def bm25_reference(docs: Sequence[str], query: str) -> dict[int, float]:
    """BM25 of each document (by position) that matches ``query``, computed directly from the
    texts: the reference the store implementations are tested against."""
    parsed = [lexical_doc(text) for text in docs]
    n = len(parsed)
    avgdl = sum(d.length for d in parsed) / n if n else 0.0
    scores: dict[int, float] = {}
    for term in query_stems(query):
        df = sum(1 for d in parsed if term in d.terms)
        for i, d in enumerate(parsed):
            if term in d.terms:
                weight = bm25_weight(d.terms[term], d.length, avgdl)
                scores[i] = scores.get(i, 0.0) + idf(n, df) * weight
    return scores
