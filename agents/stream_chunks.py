"""Streamed chat completions handed to LangChain as the server's JSON, not as OpenAI SDK objects.

Why: ``ChatOpenAI`` streams through ``client.chat.completions.create(stream=True)``, whose
iterator builds a ``ChatCompletionChunk`` model from every chunk's JSON (a recursive, typed
construction), and LangChain's first step with each chunk is ``chunk.model_dump()``, back to the
dict it was. Both walks were most of the model client's CPU per token under load
(``bench/server_load.py``). :class:`DictChunkCompletions` sends the same request (the SDK's own
request transform, options, authentication, retries and error mapping, through its own
``_post``) and asks the SDK's stream for plain objects (``cast_to=object``): LangChain then gets
each chunk's dict as the server sent it, which its chunk converter reads with ``.get`` exactly as
it reads a dumped model (absent keys and ``None`` read alike). Error events inside the stream
still raise, as the SDK's stream checks them before casting. Non-streamed replies are the SDK's
``ChatCompletion``, and every other attribute is the SDK's own.

The request body, streamed or not (``create`` and ``with_raw_response.create``, which LangChain's
non-streamed calls use), skips the SDK's typed transform when it is plain JSON already (what
LangChain builds): the transform walks every message against the params' TypedDicts to rename
aliased keys and encode typed values (0.55 ms for a four-message chat, 6 ms for a long one), and
the chat completion params have neither, so for plain JSON it returns what it was given (a test
holds the SDK to that). Anything else (an SDK object, a ``NotGiven``) is the SDK's own call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from openai import AsyncStream
from openai._base_client import make_request_options
from openai._legacy_response import async_to_raw_response_wrapper
from openai._utils import async_maybe_transform
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

__all__ = ["DictChunkCompletions", "plain_json"]

_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")


def plain_json(value: Any) -> bool:
    """Whether ``value`` is built of JSON's own types only (str-keyed dicts, lists, scalars)."""
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    return False


class _RawResponse:
    """``with_raw_response`` of :class:`DictChunkCompletions`: its ``create``, answering the raw response."""

    def __init__(self, create: Callable[..., Awaitable[Any]]) -> None:
        self.create = async_to_raw_response_wrapper(create)


class DictChunkCompletions:
    """``chat.completions`` of an OpenAI client whose streamed chunks are the server's dicts."""

    def __init__(self, completions: AsyncCompletions) -> None:
        self._completions = completions
        self.with_raw_response = _RawResponse(self.create)  # LangChain's non-streamed calls go there

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)

    async def create(self, **params: Any) -> Any:
        """As ``AsyncCompletions.create``; with ``stream=True`` the stream yields dicts."""
        streamed = params.get("stream") is True
        if streamed and params.get("response_format") is not None:
            return await self._completions.create(**params)  # LangChain's structured stream: the SDK's
        options = {key: params.pop(key) for key in _OPTIONS if key in params}
        body: Any
        if plain_json(params):
            body = params
        elif streamed:
            body = await async_maybe_transform(params, CompletionCreateParamsStreaming)
        else:
            return await self._completions.create(**params, **options)
        return await self._completions._post(
            "/chat/completions",
            body=body,
            options=make_request_options(**options, security={"bearer_auth": True}),
            cast_to=object if streamed else ChatCompletion,
            stream=streamed,
            stream_cls=AsyncStream[object],
        )
