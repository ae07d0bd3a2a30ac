"""Streamed replies read as the server's JSON give LangChain exactly what the SDK's objects gave it."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from agents.models import chat_model
from agents.stream_chunks import DictChunkCompletions
from tests.support.scripted_openai import ScriptedOpenAI

REPLY = "The answer is 42. " * 4


def _sdk_model(url: str, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=url, api_key=SecretStr("k"), model="m", temperature=0.0, max_retries=0, **kwargs
    )


def _plain(chunks: list[AIMessageChunk]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.model_dump().items() if k != "id"} for c in chunks]  # ids are per run


async def _chunks(model: Any, **kwargs: Any) -> list[AIMessageChunk]:
    return [c async for c in model.astream([HumanMessage("question")], **kwargs)]  # type: ignore[misc]


@pytest.mark.parametrize("stream_usage", [False, True])
async def test_same_chunks_as_the_sdk(llm: ScriptedOpenAI, stream_usage: bool) -> None:
    llm.when("question", REPLY)
    ours = chat_model(base_url=llm.url, api_key="k", model="m")
    assert isinstance(ours.async_client, DictChunkCompletions)  # type: ignore[attr-defined]
    expected = await _chunks(_sdk_model(llm.url), stream_usage=stream_usage)
    got = await _chunks(ours, stream_usage=stream_usage)
    assert len(expected) > 3
    assert _plain(got) == _plain(expected)
    assert "".join(str(c.content) for c in got) == REPLY
    if stream_usage:
        assert got[-1].usage_metadata is not None or any(c.usage_metadata for c in got)
    sent = llm.requests_matching("question")
    assert sent[-1] == sent[-2]  # the same request body


async def test_not_streamed_is_what_the_sdk_gives(llm: ScriptedOpenAI) -> None:
    """Non-streamed calls (LangChain's ``with_raw_response.create``) send and read what the SDK does."""
    llm.when("question", REPLY)
    ours = chat_model(base_url=llm.url, api_key="k", model="m")

    async def sdk_create(**params: Any) -> Any:
        raise AssertionError("plain JSON went through the SDK's create (and its transform)")

    ours.async_client._completions.create = sdk_create  # type: ignore[attr-defined]
    expected = await _sdk_model(llm.url).ainvoke(
        [HumanMessage("question")], response_format={"type": "json_object"}
    )
    got = await ours.ainvoke([HumanMessage("question")], response_format={"type": "json_object"})
    assert got.content == expected.content == REPLY
    drop = ("id", "response_metadata")  # ids are per reply, and so is the metadata's (its id)
    assert {k: v for k, v in got.model_dump().items() if k not in drop} == {
        k: v for k, v in expected.model_dump().items() if k not in drop
    }
    assert {k: v for k, v in got.response_metadata.items() if k != "id"} == {
        k: v for k, v in expected.response_metadata.items() if k != "id"
    }
    sent = llm.requests_matching("question")
    assert sent[-1] == sent[-2] and sent[-1].get("stream") in (None, False)  # the same request body
    assert sent[-1]["response_format"] == {"type": "json_object"}


async def test_errors_are_the_sdks() -> None:
    model = _sdk_model("http://127.0.0.1:9/v1")  # discard port: nothing listens
    model.async_client = DictChunkCompletions(model.async_client)
    with pytest.raises(openai.APIConnectionError):
        await _chunks(model)


async def test_the_sdks_transform_leaves_langchains_plain_payloads_as_they_are() -> None:
    """The streamed request skips the SDK's transform for plain JSON: it must be the identity on it."""
    from langchain_core.messages import AIMessage, SystemMessage, ToolMessage
    from langchain_core.tools import tool
    from openai._utils import async_maybe_transform
    from openai.types.chat import completion_create_params

    from agents.stream_chunks import plain_json

    @tool
    def run_code(code: str, language: str = "python") -> str:
        """Run code in the sandbox."""
        return code

    model = _sdk_model("http://127.0.0.1:9/v1", seed=7, max_tokens=64).bind_tools([run_code])
    messages = [
        SystemMessage("You write code."),
        HumanMessage(
            [
                {"type": "text", "text": "what is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]
        ),
        AIMessage("", tool_calls=[{"name": "run_code", "args": {"code": "print(1)"}, "id": "call_1"}]),
        ToolMessage("1\n", tool_call_id="call_1"),
        HumanMessage("and now 2, please"),
    ]
    bound: Any = model
    payload = bound.bound._get_request_payload(
        messages, stream=True, stream_options={"include_usage": True}, **bound.kwargs
    )
    payload["stream"] = True
    assert plain_json(payload) and len(payload["messages"]) == 5 and payload["tools"]
    transformed = await async_maybe_transform(
        payload, completion_create_params.CompletionCreateParamsStreaming
    )
    assert transformed == payload
    assert not plain_json({"messages": [HumanMessage("x")]}) and not plain_json({1: "a"})
