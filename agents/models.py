"""The model factory: one ``ChatOpenAI`` for any OpenAI-compatible endpoint, or the embedded model.

Every agent gets its chat model from :func:`chat_model`, so switching from the embedded
Qwen2.5-Coder-1.5B to a hosted model is a matter of ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` /
``AGENTIC_MODEL``. The embedded model answers tool calls as JSON in its text; the graph's parsers read
them, so nothing here depends on native tool calling.
"""

from __future__ import annotations

import logging

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from agents.settings import ModelSettings
from agents.stream_chunks import DictChunkCompletions

__all__ = ["DEFAULT_REMOTE_MODEL", "achat_model", "chat_model", "operator_key_for"]

logger = logging.getLogger(__name__)

DEFAULT_REMOTE_MODEL = "gpt-4o-mini"
"""Model name sent to an external endpoint when neither the caller nor ``AGENTIC_MODEL`` names one."""

_NO_KEY = "not-needed"


def _same_endpoint(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def operator_key_for(base_url: str, settings: ModelSettings) -> str | None:
    """The operator's API key, but only for the operator's own endpoint.

    Why: a key configured for one endpoint must never be sent to another URL, whoever named it
    (a client's run context, a mistyped setting): that would hand the key to that URL's owner.
    """
    if (
        settings.openai_api_key
        and settings.openai_base_url
        and _same_endpoint(base_url, settings.openai_base_url)
    ):
        return settings.openai_api_key
    return None


def chat_model(
    *,
    base_url: str | None,
    api_key: str | None,
    model: str | None,
    temperature: float = 0.0,
    seed: int | None = None,
    settings: ModelSettings | None = None,
) -> BaseChatModel:
    """Return a chat model for an OpenAI-compatible endpoint, or for the embedded server.

    Args:
        base_url: Endpoint root (``.../v1``); None starts (once per process) the embedded llama.cpp
            server and points at it. The first call then blocks while the model loads (seconds);
            async code may warm it up with :func:`achat_model`.
        api_key: Key for the endpoint; None sends the operator's ``OPENAI_API_KEY`` only when
            ``base_url`` is the operator's ``OPENAI_BASE_URL`` (see :func:`operator_key_for`).
        model: Model name; ignored by the embedded server.
        temperature: Sampling temperature (0 = greedy).
        seed: Sampling seed, forwarded to the server (llama.cpp honours it).
        settings: Model settings; read from the environment when omitted.

    Raises:
        agents.runtime.embedded.EmbeddedServerError: The embedded model could not be started.
    """
    settings = settings or ModelSettings()
    if base_url is None:
        from agents.runtime.embedded import EMBEDDED_MODEL_NAME, embedded_base_url

        return _dict_chunks(
            ChatOpenAI(
                base_url=embedded_base_url(settings),
                api_key=SecretStr(_NO_KEY),
                model=EMBEDDED_MODEL_NAME,
                temperature=temperature,
                seed=seed,
                max_tokens=settings.max_tokens,  # type: ignore[call-arg]
                timeout=settings.request_timeout,
                max_retries=0,
            )
        )
    return _dict_chunks(
        ChatOpenAI(
            base_url=base_url,
            api_key=SecretStr(api_key or operator_key_for(base_url, settings) or _NO_KEY),
            model=model or settings.model or DEFAULT_REMOTE_MODEL,
            temperature=temperature,
            seed=seed,
            timeout=settings.request_timeout,
            max_retries=2,
        )
    )


def _dict_chunks(model: ChatOpenAI) -> ChatOpenAI:
    """Stream chunks reach LangChain as the server's JSON (see :mod:`agents.stream_chunks`)."""
    model.async_client = DictChunkCompletions(model.async_client)
    return model


async def achat_model(
    *,
    base_url: str | None,
    api_key: str | None,
    model: str | None,
    temperature: float = 0.0,
    seed: int | None = None,
    settings: ModelSettings | None = None,
) -> BaseChatModel:
    """Async twin of :func:`chat_model`: starts the embedded server in a worker thread, not on the loop."""
    import asyncio

    if base_url is None:
        from agents.runtime.embedded import get_embedded_server

        await asyncio.to_thread(get_embedded_server, settings or ModelSettings())
    return chat_model(
        base_url=base_url, api_key=api_key, model=model, temperature=temperature, seed=seed, settings=settings
    )
