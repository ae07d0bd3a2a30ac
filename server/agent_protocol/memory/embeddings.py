"""Embedding models for semantic search: the operator's OpenAI-compatible endpoint, or the embedded one.

Both are LangChain ``Embeddings`` (what LangGraph's index config takes). ``EndpointEmbeddings`` posts
to ``{url}/embeddings`` with httpx, the key only to that URL. ``LocalEmbeddings`` is WordLlama's
``l2_supercat`` at 256 dimensions: the weights (16 MB) and tokenizer ship inside the pinned
``wordllama`` wheel from PyPI, so it works offline; it is loaded from the package's own files (its
``load()`` would try to download the tokenizer), once, on a worker thread, on first use. It is a
static token-embedding model: cheap (about a millisecond per short text), good enough to rank
memories by topic, not a substitute for a large embedding model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from langchain_core.embeddings import Embeddings

from server.agent_protocol.memory.config import LOCAL_DIMS, MemoryStoreSettings
from server.agent_protocol.memory.errors import EmbeddingUnavailableError

__all__ = ["EndpointEmbeddings", "LocalEmbeddings", "embeddings_from_settings"]

_BATCH = 128


class EndpointEmbeddings(Embeddings):
    """An OpenAI-compatible ``/embeddings`` endpoint chosen by the operator."""

    def __init__(self, url: str, model: str, dims: int, *, api_key: str | None, timeout_s: float) -> None:
        self.url = url.rstrip("/") + "/embeddings"
        self.model = model
        self.dims = dims
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s

    def _body(self, texts: Sequence[str]) -> dict[str, Any]:
        return {"model": self.model, "input": list(texts)}

    def _vectors(self, response: httpx.Response, count: int) -> list[list[float]]:
        if response.status_code >= 400:
            raise EmbeddingUnavailableError(
                f"the embedding endpoint answered {response.status_code}: {response.text[:200]}"
            )
        try:
            rows = sorted(response.json()["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingUnavailableError(f"the embedding endpoint's answer is unreadable: {exc}") from exc
        if len(vectors) != count or any(len(v) != self.dims for v in vectors):
            raise EmbeddingUnavailableError(
                f"the embedding endpoint returned {len(vectors)} vectors of "
                f"{sorted({len(v) for v in vectors})} dimensions; expected {count} of {self.dims} "
                "(AGENTIC_STORE_EMBEDDINGS_DIMS)"
            )
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts, in batches (blocking)."""
        found: list[list[float]] = []
        with httpx.Client(timeout=self._timeout, headers=self._headers, trust_env=False) as client:
            for start in range(0, len(texts), _BATCH):
                batch = texts[start : start + _BATCH]
                try:
                    response = client.post(self.url, json=self._body(batch))
                except httpx.HTTPError as exc:
                    raise EmbeddingUnavailableError(f"the embedding endpoint is unreachable: {exc}") from exc
                found.extend(self._vectors(response, len(batch)))
        return found

    def embed_query(self, text: str) -> list[float]:
        """Embed one text (blocking)."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts, in batches."""
        found: list[list[float]] = []
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers, trust_env=False) as client:
            for start in range(0, len(texts), _BATCH):
                batch = texts[start : start + _BATCH]
                try:
                    response = await client.post(self.url, json=self._body(batch))
                except httpx.HTTPError as exc:
                    raise EmbeddingUnavailableError(f"the embedding endpoint is unreachable: {exc}") from exc
                found.extend(self._vectors(response, len(batch)))
        return found

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one text."""
        return (await self.aembed_documents([text]))[0]


class LocalEmbeddings(Embeddings):
    """WordLlama ``l2_supercat`` (256 dimensions) from the files in its wheel; no network."""

    dims = LOCAL_DIMS

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import wordllama
                from safetensors import safe_open
                from wordllama import WordLlama
                from wordllama.inference import WordLlamaInference

                root = Path(wordllama.__file__).parent
                tokenizer = WordLlama.load_tokenizer(
                    root / "tokenizers" / "l2_supercat_tokenizer_config.json"
                )
                weights = root / "weights" / f"l2_supercat_{LOCAL_DIMS}.safetensors"
                with safe_open(str(weights), framework="np", device="cpu") as f:
                    table = f.get_tensor("embedding.weight")
                self._model = WordLlamaInference(table, tokenizer)
            return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts (blocking; the first call loads the model, about a second)."""
        if not texts:
            return []
        return [[float(x) for x in row] for row in self._load().embed(texts)]

    def embed_query(self, text: str) -> list[float]:
        """Embed one text (blocking)."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts on a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one text on a worker thread."""
        return (await self.aembed_documents([text]))[0]


def embeddings_from_settings(settings: MemoryStoreSettings) -> tuple[Embeddings, int] | None:
    """The operator's embedding model and its dimensions, or None when semantic search is off."""
    if settings.embeddings == "off":
        return None
    if settings.embeddings == "endpoint" and settings.embeddings_url:
        key = settings.embeddings_api_key.get_secret_value() if settings.embeddings_api_key else None
        endpoint = EndpointEmbeddings(
            settings.embeddings_url,
            settings.embeddings_model,
            settings.embeddings_dims,
            api_key=key,
            timeout_s=settings.embeddings_timeout_s,
        )
        return endpoint, settings.embeddings_dims
    return LocalEmbeddings(), LOCAL_DIMS
