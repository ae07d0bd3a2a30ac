"""The Task Agent survives malformed model replies."""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.messages import HumanMessage

from agents.context import Context
from agents.graph import graph
from agents.routing import guess_route
from tests.agents.scripts import fenced, route
from tests.support.scripted_openai import CODE, RESPOND, ROUTER, Reply, ScriptedOpenAI

AMBIGUOUS = "the weather in Paris"


async def test_malformed_reply_then_fenced_single_quotes(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.add(
        Reply("I think the user wants a greeting. Let me answer!", match=ROUTER),
        Reply("Sure:\n```json\n{'next': 'answer', 'task': 'greet',}\n```", match=ROUTER),
        Reply("Hello there", match=RESPOND),
    )
    final = await graph.ainvoke({"messages": [HumanMessage(AMBIGUOUS)]}, context=make_context())
    assert final["messages"][-1].content == "Hello there"
    retry = llm.requests_matching(ROUTER)[1]["messages"]
    assert "not valid JSON" in retry[-1]["content"]


async def test_two_malformed_replies_end_with_a_clear_message(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.when(ROUTER, "}}} nonsense {{{")
    final = await graph.ainvoke({"messages": [HumanMessage(AMBIGUOUS)]}, context=make_context())
    assert "could not understand the model's routing reply" in final["messages"][-1].content
    assert len(llm.requests_matching(ROUTER)) == 2


async def test_a_coding_request_never_waits_on_the_models_routing(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.when(ROUTER, "no idea")
    llm.add(Reply(fenced("print(42)\n"), match=CODE))
    final = await graph.ainvoke(
        {"messages": [HumanMessage("Write a python program that prints 42")]},
        context=make_context(generate_tests=False),
    )
    assert final["last_run"]["passed"] is True
    assert not llm.requests_matching(ROUTER)
    assert final["messages"][-1].content.startswith("Done: main.py ran successfully")


async def test_unreachable_model_is_a_message_not_a_crash(make_context: Callable[..., Context]) -> None:
    ctx = make_context(model_base_url="http://127.0.0.1:9/v1")
    final = await graph.ainvoke({"messages": [HumanMessage("hello")]}, context=ctx)
    assert "could not be reached" in final["messages"][-1].content


async def test_structured_output_is_requested(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.add(Reply(route("answer"), match=ROUTER))
    await graph.ainvoke({"messages": [HumanMessage(AMBIGUOUS)]}, context=make_context())
    body = llm.requests_matching(ROUTER)[0]
    assert body["response_format"]["type"] == "json_schema"
    assert "answer" not in body["response_format"]["json_schema"]["schema"]["properties"]


def test_keyword_guess() -> None:
    assert guess_route("please summarize this article") == "summarize"
    assert guess_route("write a script that sorts") == "code"
    assert guess_route("search for the latest release") == "search"
    assert guess_route("hello") == "answer"
    assert guess_route(AMBIGUOUS) is None
