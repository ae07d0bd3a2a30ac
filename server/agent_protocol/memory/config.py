"""Settings of the long-term memory store (env prefix ``AGENTIC_STORE_``).

The embedding endpoint, its model, key and dimensions are the operator's: a client never names
them (a search's ``query`` is embedded with what is configured here, or not at all).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LOCAL_DIMS", "MemoryStoreSettings"]

LOCAL_DIMS = 256
"""Dimensions of the embedded model (WordLlama ``l2_supercat`` at 256, shipped in its PyPI wheel)."""


class MemoryStoreSettings(BaseSettings):
    """How items are embedded for semantic search, how long they live, and how big they may be."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_STORE_", extra="ignore", populate_by_name=True)

    embeddings: Literal["local", "endpoint", "off"] | None = Field(
        default=None,
        description="``local``: the embedded WordLlama model, in-process, offline (default without a URL); "
        "``endpoint``: the OpenAI-compatible endpoint below (default with a URL); ``off``: no semantic "
        "search (a search with ``query`` is refused with 422).",
    )
    embeddings_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible API (``.../v1``); ``/embeddings`` is added.",
    )
    embeddings_model: str = Field(default="text-embedding-3-small", description="Model name sent to it.")
    embeddings_dims: int = Field(default=1536, ge=1, le=16384, description="Length of its vectors.")
    embeddings_api_key: SecretStr | None = Field(
        default=None, repr=False, description="Sent as a Bearer token to the embeddings URL only."
    )
    embeddings_timeout_s: float = Field(default=30.0, gt=0, description="Per embeddings request.")
    index_fields: list[str] = Field(
        default_factory=lambda: ["$"],
        description='Fields of a value embedded by default (LangGraph\'s paths; ``"$"``: the whole value).',
    )
    search_candidates: int = Field(
        default=5000,
        ge=10,
        le=1_000_000,
        description="A semantic search ranks at most this many of the newest matching items.",
    )
    default_ttl_minutes: float | None = Field(
        default=None, gt=0, description="TTL of items put without one; unset: they live until deleted."
    )
    refresh_ttl_on_read: bool = Field(default=True, description="Reads renew an item's TTL by default.")
    ttl_sweep_minutes: float = Field(
        default=5.0, gt=0, description="How often expired items are deleted (reads skip them at once)."
    )
    max_value_bytes: int = Field(default=65536, ge=2, description="Largest item value, as compact JSON.")
    max_namespace_depth: int = Field(default=8, ge=1, le=64, description="Labels in a client's namespace.")
    max_label_chars: int = Field(default=128, ge=1, le=1024, description="Characters of a namespace label.")
    max_key_chars: int = Field(default=256, ge=1, le=4096, description="Characters of an item key.")

    @model_validator(mode="after")
    def _pick_embeddings(self) -> MemoryStoreSettings:
        if self.embeddings is None:
            self.embeddings = "endpoint" if self.embeddings_url else "local"
        if self.embeddings == "endpoint" and not self.embeddings_url:
            raise ValueError("AGENTIC_STORE_EMBEDDINGS=endpoint needs AGENTIC_STORE_EMBEDDINGS_URL")
        return self
