"""The chat path tells the truth (issue 9), against the scripted model, the real store and sandbox.

Each test states a failure users met: a computed number answered from the router's head, a failing
run reported as working, the user's file name or pasted code ignored, a wrong model-written check
failing a correct program, the router's JSON streamed as chat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessageChunk, HumanMessage

from agents.context import Context
from agents.graph import graph
from tests.agents.scripts import answer, fenced, route
from tests.support.scripted_openai import CODE, PREDICT, ROUTER, TESTS, Reply, ScriptedOpenAI
from workspace.sql import SqlVersionStore

SQUARES = "Write a Python program that prints the sum of the squares of the integers from 1 to 20, run it, and tell me the number it printed."  # noqa: E501
BUGGY_MEAN = "def mean(xs):\n    return sum(xs) / len(xs) + 1\n\nprint(mean([1, 2, 3]))\n"
FIXED_MEAN = "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint(mean([1, 2, 3]))\n"
FIZZBUZZ = (
    "for i in range(1, 16):\n    if i % 15 == 0:\n        print('FizzBuzz')\n    elif i % 3 == 0:\n"
    "        print('Fizz')\n    elif i % 5 == 0:\n        print('Buzz')\n    else:\n        print(i)\n"
)


async def turn(ctx: Context, text: str, **state: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One user turn; the final values and the attempt events."""
    events: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        {"messages": [HumanMessage(text)], **state}, context=ctx, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            final = chunk
    return final, events


async def test_a_number_to_compute_is_run_and_quoted_from_the_output(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.when(ROUTER, answer("The sum of the squares from 1 to 20 is 2875."))  # the head's wrong number
    llm.add(Reply(fenced("print(sum(i * i for i in range(1, 21)))\n"), match=CODE))
    final, events = await turn(make_context(generate_tests=False), SQUARES)
    assert [e["passed"] for e in events] == [True]
    reply = final["messages"][-1].content
    assert "```\n2870\n```" in reply and "2875" not in reply


async def test_a_failing_code_agent_gives_a_reply_that_says_failed(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    broken = "def f(n):\n    return n / 0\n\nprint(f(3))\n"
    llm.when(ROUTER, answer("Done: f is implemented and works correctly."))
    llm.when(CODE, fenced(broken))
    llm.when("It failed.", "Cause: unsure.\n" + fenced(broken.replace("3", "4")))
    final, events = await turn(
        make_context(max_attempts=2, generate_tests=False), "implement f(n) and print f(3)"
    )
    assert [e["passed"] for e in events] == [False, False]
    reply = final["messages"][-1].content
    assert reply.startswith("Failed: main.py still fails after 2 of 2 attempts.")
    assert "ZeroDivisionError" in reply and "works" not in reply


async def test_a_pasted_program_is_stored_as_the_users_version_before_the_fix(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    llm.add(Reply(fenced(FIXED_MEAN), match=CODE))
    request = f"This program has a bug, find and fix it:\n```python\n{BUGGY_MEAN}```"
    final, events = await turn(make_context(generate_tests=False), request)
    assert not llm.requests_matching(ROUTER), "a request carrying code goes to the Code Agent directly"
    history = await store.history(final["workspace_id"], "main.py")
    assert [(v.author, v.content) for v in history] == [("user", BUGGY_MEAN), ("code_agent", FIXED_MEAN)]
    diff = await store.diff(final["workspace_id"], "main.py", history[0].id, history[1].id)
    assert "-    return sum(xs) / len(xs) + 1" in str(diff)
    draft = llm.requests_matching(CODE)[0]["messages"][-1]["content"]
    assert BUGGY_MEAN.strip() in draft, "the Code Agent gets the user's words verbatim"
    assert "```\n2.0\n```" in final["messages"][-1].content


async def test_a_named_file_keeps_its_name(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    llm.add(Reply(fenced(FIZZBUZZ), match=CODE))
    final, events = await turn(make_context(), "Write fizzbuzz.py that prints FizzBuzz up to 15")
    assert events[-1]["passed"] is True
    assert "fizzbuzz.py" in final["files"] and "main.py" not in final["files"]
    assert (await store.read(final["workspace_id"], "fizzbuzz.py")).content == FIZZBUZZ
    assert "Write the file fizzbuzz.py" in llm.requests_matching(CODE)[0]["messages"][-1]["content"]
    assert final["messages"][-1].content.startswith("Done: fizzbuzz.py ran successfully")


async def test_a_wrong_model_written_check_does_not_doom_a_correct_program(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    code = "def square(n):\n    return n * n\n\nprint(square(7))\n"
    llm.add(Reply(fenced(code), match=CODE))
    llm.add(Reply("```python\nassert square(3) == 9\nassert square(7) == 48\n```", match=TESTS))
    llm.add(Reply("7 times 7 is 49.\nValue: 49", match=PREDICT))
    final, events = await turn(make_context(), "Write square(n) returning n squared; print square(7).")
    assert [e["passed"] for e in events] == [True], "the correct program was not patched"
    assert not llm.requests_matching("It failed.")
    checks = await store.history(final["workspace_id"], "test_main.py")
    assert len(checks) == 2 and "square(7) == 48" in checks[0].content and "48" not in checks[1].content
    assert "dropped" in checks[1].message
    reply = final["messages"][-1].content
    assert reply.startswith("Done: main.py ran successfully") and "assert square(7) == 48" in reply


async def test_a_check_confirmed_by_the_second_prediction_makes_the_code_change(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    wrong = "def square(n):\n    return n + n\n"
    right = "def square(n):\n    return n * n\n"
    llm.add(Reply(fenced(wrong), match=CODE), Reply("```python\nassert square(3) == 9\n```", match=TESTS))
    llm.add(Reply("Value: 9", match=PREDICT), Reply("Cause: adds.\n" + fenced(right), match="It failed."))
    final, events = await turn(make_context(), "Write square(n) returning n squared.")
    assert [e["passed"] for e in events] == [False, True]


async def test_the_users_examples_are_the_first_checks(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    """A docstring example decides: the classic program the name suggests fails it and is repaired."""
    request = (
        'Implement:\n```python\ndef fizz(n: int) -> str:\n    """Return "Fizz" when n is divisible by 7.\n\n'
        '    >>> fizz(14)\n    \'Fizz\'\n    """\n```'
    )
    classic = "def fizz(n: int) -> str:\n    return 'Fizz' if n % 3 == 0 else str(n)\n"
    spec = "def fizz(n: int) -> str:\n    return 'Fizz' if n % 7 == 0 else str(n)\n"
    llm.add(Reply(fenced(classic), match=CODE), Reply("Cause: 7.\n" + fenced(spec), match="It failed."))
    final, events = await turn(make_context(), request)
    assert [e["passed"] for e in events] == [False, True]
    assert not llm.requests_matching(TESTS), "the user's examples are enough: no model-written checks"
    checks = (await store.read(final["workspace_id"], "test_main.py")).content
    assert "assert fizz(14) == 'Fizz'" in checks
    assert "1 from your examples" in final["messages"][-1].content


async def test_routing_json_and_check_generation_are_not_streamed_as_chat(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.add(
        Reply(route("code", "print 6 * 7"), match=ROUTER),
        Reply(fenced("def f():\n    return 42\n\nprint(f())\n"), match=CODE),
    )
    llm.add(Reply("```python\nassert f() == 42\n```", match=TESTS))
    streamed: list[tuple[str, str]] = []
    async for chunk, meta in graph.astream(
        {"messages": [HumanMessage("the answer to everything")]},
        context=make_context(),
        stream_mode="messages",
    ):
        if isinstance(chunk, AIMessageChunk) and chunk.content:
            streamed.append((str(meta.get("langgraph_node")), str(chunk.content)))
    text = "".join(t for _, t in streamed)
    assert llm.requests_matching(ROUTER) and llm.requests_matching(TESTS)
    assert '"next"' not in text and "assert f()" not in text, text
    assert "return 42" in text, "the Code Agent's draft streams token by token"


def test_the_graphs_output_schema_is_published() -> None:
    schema = graph.get_output_jsonschema()
    assert "messages" in schema["properties"] and "code_result" in schema["properties"]


async def test_fix_main_py_in_an_existing_workspace_edits_that_file(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    workspace = await store.create_workspace("existing")
    await store.write(workspace.id, "main.py", BUGGY_MEAN, author="user", message="mine")
    llm.add(Reply(fenced(FIXED_MEAN), match=CODE))
    final, events = await turn(make_context(generate_tests=False), "fix main.py", workspace_id=workspace.id)
    assert events[-1]["passed"] is True and list(final["files"]) == ["main.py"]
    history = await store.history(workspace.id, "main.py")
    assert [v.author for v in history] == ["user", "code_agent"] and history[-1].content == FIXED_MEAN
    assert BUGGY_MEAN.strip() in llm.requests_matching(CODE)[0]["messages"][-1]["content"]


async def test_a_module_and_its_tests_are_two_files(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    module = "def area(w, h):\n    return w * h\n"
    tests = "from shapes import area\n\n\ndef test_area():\n    assert area(2, 3) == 6\n"
    llm.add(Reply(f"shapes.py:\n```python\n{module}```\ntest_shapes.py:\n```python\n{tests}```", match=CODE))
    final, events = await turn(
        make_context(), "Write shapes.py with area(w, h) and its tests in test_shapes.py"
    )
    assert events[-1]["passed"] is True, events
    assert {"shapes.py", "test_shapes.py"} <= set(final["files"])
    assert (await store.read(final["workspace_id"], "test_shapes.py")).content == tests


async def test_a_follow_up_carries_the_earlier_turn(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from agents.graph import build_graph

    threaded = build_graph().compile(checkpointer=InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": "follow-up"}}
    ctx = make_context(generate_tests=False)
    llm.add(Reply(fenced(FIZZBUZZ), match=CODE), Reply(fenced(FIZZBUZZ.replace("16", "31")), match=CODE))
    await threaded.ainvoke(
        {"messages": [HumanMessage("Write fizzbuzz.py that prints FizzBuzz up to 15")]}, config, context=ctx
    )
    final = await threaded.ainvoke(
        {"messages": [HumanMessage("now make it go up to 30 instead")]}, config, context=ctx
    )
    second = llm.requests_matching(CODE)[1]["messages"][-1]["content"]
    assert "User: Write fizzbuzz.py that prints FizzBuzz up to 15" in second
    assert "Current content of fizzbuzz.py" in second and "range(1, 16)" in second
    assert len(await store.history(final["workspace_id"], "fizzbuzz.py")) == 2


async def test_a_silent_program_does_not_pass_when_output_was_asked_for(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    silent = "def squares():\n    return [i * i for i in range(1, 6)]\n"
    loud = silent + "\n\nfor s in squares():\n    print(s)\n"
    llm.add(
        Reply(fenced(silent), match=CODE), Reply("Cause: never prints.\n" + fenced(loud), match="It failed.")
    )
    final, events = await turn(
        make_context(generate_tests=False), "Create squares.py that prints the squares of 1 to 5."
    )
    assert [(e["passed"], e["error_class"]) for e in events] == [(False, "NoOutput"), (True, None)]
    assert "It printed:\n```\n1\n4\n9\n16\n25\n```" in final["messages"][-1].content
