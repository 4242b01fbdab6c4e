"""Settings for the command line and servers: the only place Engram reads environment variables.

==========================  ==================  =============================================
variable                    default             meaning
==========================  ==================  =============================================
``ENGRAM_DB``               ``engram.db``       the SQLite file
``ENGRAM_EMBEDDER``         ``bundled``         an embedder spec, see :func:`make_embedder`
``ENGRAM_OPENAI_BASE_URL``  OpenAI's API        base URL of an OpenAI-compatible server
``ENGRAM_OPENAI_API_KEY``   none                its API key
``ENGRAM_EMBED_CACHE``      none                a SQLite file that keeps computed vectors
``ENGRAM_SERVER``           none                an Engram server's URL: the command line uses it
                                                (an :class:`~engram.Client`) instead of a file
``ENGRAM_API_KEY``          none                the API key sent to that server
``ENGRAM_LLM_BASE_URL``     none                an OpenAI-compatible LLM endpoint: facts,
                                                consolidation and answers (docs/llm.md; the
                                                other ``ENGRAM_LLM_*`` variables are there)
``ENGRAM_LLM_MODEL``        none                the model it serves
==========================  ==================  =============================================

The library itself never reads the environment: ``Memory`` takes its store and embedder as
arguments. Environment variables are read when :meth:`Settings.from_env` is called, never at
import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engram.errors import ConfigurationError

if TYPE_CHECKING:
    from engram.embed.base import Embedder
    from engram.llm.base import LLM

__all__ = ["EMBEDDER_SPECS", "Settings", "make_embedder", "make_llm_from"]

EMBEDDER_SPECS = (
    ("bundled", "the bundled all-MiniLM-L6-v2 model, run locally on the CPU (offline)"),
    ("onnx", "the bundled model on onnxruntime: same vectors, less CPU (exported on first use)"),
    ("st:NAME_OR_PATH", "any sentence-transformers model: a local directory or a hub name"),
    ("openai:MODEL", "an OpenAI-compatible /v1/embeddings endpoint (see ENGRAM_OPENAI_*)"),
    ("hash[:DIM]", "a deterministic hashing fake for tests (default DIM 256); not for real use"),
)


@dataclass(frozen=True)
class Settings:
    """Where the memory lives and how it embeds text: a local file (``db``, ``embedder``), or an
    Engram server (``server``, ``api_key``)."""

    db: str = "engram.db"
    embedder: str = "bundled"
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    embed_cache: str | None = None
    server: str | None = None
    api_key: str | None = field(default=None, repr=False)
    llm_base_url: str | None = None
    llm_model: str | None = None
    query_prompt: str | None = None  # for st: models (None: the model's own prompts)
    document_prompt: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (default ``os.environ``); empty values count as unset."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            db=get("ENGRAM_DB") or cls.db,
            embedder=get("ENGRAM_EMBEDDER") or cls.embedder,
            openai_base_url=get("ENGRAM_OPENAI_BASE_URL"),
            openai_api_key=get("ENGRAM_OPENAI_API_KEY"),
            embed_cache=get("ENGRAM_EMBED_CACHE"),
            server=get("ENGRAM_SERVER"),
            api_key=get("ENGRAM_API_KEY"),
            llm_base_url=get("ENGRAM_LLM_BASE_URL"),
            llm_model=get("ENGRAM_LLM_MODEL"),
            query_prompt=_prompt(env.get("ENGRAM_QUERY_PROMPT")),
            document_prompt=_prompt(env.get("ENGRAM_DOCUMENT_PROMPT")),
        )

    def with_(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; ``None`` values are ignored (not given)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _prompt(value: str | None) -> str | None:
    """A prompt as given (its spaces matter: "query: "); blank counts as unset."""
    return value if value and value.strip() else None


def _hash_dim(arg: str) -> int:
    try:
        dim = int(arg)
    except ValueError:
        dim = 0
    if not 1 <= dim <= 65536:
        raise ConfigurationError(f"embedder 'hash:{arg}': DIM must be an integer from 1 to 65536")
    return dim


def make_embedder(spec: str, settings: Settings | None = None) -> Embedder:
    """Build the embedder named by ``spec``. Nothing is loaded or contacted until it is used.

    - ``bundled``: the bundled all-MiniLM-L6-v2 model, offline;
    - ``onnx``: the same weights on onnxruntime (the same vectors; ``engram-memory[onnx]``);
    - ``st:NAME_OR_PATH``: a sentence-transformers model;
    - ``openai:MODEL``: an OpenAI-compatible endpoint (base URL and key from ``settings``);
    - ``hash`` or ``hash:DIM``: the deterministic test fake.

    With ``settings.embed_cache`` set, the embedder keeps its vectors in that file and reuses
    them (:class:`~engram.embed.DiskCachedEmbedder`).
    """
    from engram.embed import DiskCachedEmbedder

    settings = settings or Settings()
    model = _model(spec, settings)
    return DiskCachedEmbedder(model, settings.embed_cache) if settings.embed_cache else model


def _model(spec: str, settings: Settings) -> Embedder:
    from engram.embed import HashEmbedder, OpenAIEmbedder, SentenceTransformerEmbedder

    kind, sep, arg = spec.strip().partition(":")
    arg = arg.strip()
    if kind == "bundled" and not sep:
        return SentenceTransformerEmbedder()
    if kind == "onnx" and not sep:
        from engram.embed.onnx import OnnxEmbedder

        return OnnxEmbedder()
    if kind == "hash":
        return HashEmbedder(_hash_dim(arg)) if sep else HashEmbedder()
    if kind == "st" and arg:
        return SentenceTransformerEmbedder(
            arg, query_prompt=settings.query_prompt, document_prompt=settings.document_prompt
        )
    if kind == "openai" and arg:
        if settings.openai_base_url:
            return OpenAIEmbedder(
                arg, base_url=settings.openai_base_url, api_key=settings.openai_api_key
            )
        return OpenAIEmbedder(arg, api_key=settings.openai_api_key)
    known = ", ".join(name for name, _ in EMBEDDER_SPECS)
    raise ConfigurationError(f"unknown embedder {spec!r}; expected one of: {known}")


def make_llm_from(settings: Settings) -> LLM | None:
    """The LLM of ``settings.llm_base_url`` (None: no LLM), with the other ``ENGRAM_LLM_*``
    variables and the ``[llm]`` table of ``ENGRAM_CONFIG`` (:class:`engram.llm.LLMSettings`).
    Nothing is contacted until it is used."""
    if settings.llm_base_url is None:
        return None
    try:
        from engram.llm.settings import LLMSettings, make_llm
    except ImportError as exc:
        raise ConfigurationError(
            f"an LLM is configured but its client is not installed ({exc.name}): "
            "pip install 'engram-memory[llm]'"
        ) from None
    return make_llm(LLMSettings.load(base_url=settings.llm_base_url, model=settings.llm_model))
