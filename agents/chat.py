"""Build the chat model for one call from the run's :class:`~agents.context.Context`.

Models come from ``agents.models`` (any OpenAI-compatible endpoint, or the embedded llama.cpp server
when no endpoint is configured, started off the event loop). Models are reused per endpoint and
sampling settings, so a run does not rebuild HTTP clients for every call.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.constants import TAG_NOSTREAM

from agents.context import Context
from agents.models import achat_model

__all__ = ["STREAM_AS", "ask_model", "make_chat_model", "text_of"]

logger = logging.getLogger(__name__)

STREAM_AS: ContextVar[dict[str, Any] | None] = ContextVar("agentic_stream_as", default=None)
"""Run metadata that makes a subgraph's model calls stream as its parent node's (set by that node).

LangGraph's ``messages`` stream drops tokens from subgraphs unless the client asks for subgraph
streaming; the Code Agent runs as a subgraph, yet its draft is what a user wants to watch.
"""

_cache: dict[tuple[str | None, str | None, str | None, float, int | None], BaseChatModel] = {}


async def make_chat_model(
    context: Context, *, temperature: float = 0.0, seed: int | None = None
) -> BaseChatModel:
    """A chat model for the context's endpoint with the given sampling (built once, then reused)."""
    key = (context.model_base_url, context.model_api_key, context.model_name, temperature, seed)
    model = _cache.get(key)
    if model is None:
        if len(_cache) > 64:
            _cache.clear()
        model = await achat_model(
            base_url=context.model_base_url,
            api_key=context.model_api_key,
            model=context.model_name,
            temperature=temperature,
            seed=seed,
        )
        _cache[key] = model
    return model


def text_of(message: BaseMessage) -> str:
    """The text of a reply, whether content is a string or a list of parts."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content]
    return "".join(str(p) for p in parts)


async def ask_model(
    context: Context,
    messages: list[BaseMessage],
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    stream: bool = True,
    **bind: Any,
) -> str:
    """Send ``messages`` and return the reply text; ``bind`` adds request options (response_format).

    With ``stream=False`` the call is tagged ``nostream`` (LangGraph's convention): internal calls
    such as the router's JSON or check generation are not shown to clients as chat tokens.
    """
    model: Any = await make_chat_model(context, temperature=temperature, seed=seed)
    if bind:
        model = model.bind(**bind)
    config: RunnableConfig = {"tags": [TAG_NOSTREAM]} if not stream else {}
    stream_as = STREAM_AS.get()
    if stream and stream_as:
        config["metadata"] = dict(stream_as)
    reply = await model.ainvoke(messages, config=config)
    return text_of(reply) if isinstance(reply, BaseMessage) else str(reply)
