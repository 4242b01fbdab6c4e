"""An embedder for any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama, vLLM,
llama.cpp server). Uses only the standard library's HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from engram.embed.base import Vectors
from engram.errors import EmbeddingError

__all__ = ["OpenAIEmbedder"]


class OpenAIEmbedder:
    """``POST {base_url}/embeddings`` with ``{"model", "input"}``; ``dim`` must be given or is
    learned from a first call."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        dim: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._model = model
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._dim = dim
        self._timeout = timeout

    @property
    def name(self) -> str:
        return f"openai:{self._model}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_batch(["dimension probe"]).shape[1])
        return self._dim

    def _post(self, payload: dict[str, object]) -> dict[str, object]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            f"{self._base_url}/embeddings",
            data=json.dumps(payload).encode("utf-8"),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                body = json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
            raise EmbeddingError(f"embedding request to {self._base_url} failed: {exc}") from exc
        if not isinstance(body, dict):
            raise EmbeddingError("embedding response is not a JSON object")
        return body

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        body = self._post({"model": self._model, "input": list(texts)})
        data = body.get("data")
        if not isinstance(data, list) or len(data) != len(texts):
            raise EmbeddingError("embedding response has no 'data' list of the right length")
        ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
        try:
            vectors = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"malformed embedding in response: {exc}") from exc
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise EmbeddingError(f"expected dimension {self._dim}, got {vectors.shape[1]}")
        return vectors
