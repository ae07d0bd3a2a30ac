"""The Task Agent's deterministic first pass: requests that decide their route without the model."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from agents.routing import first_pass, guess_route

REPORT = "Done: main.py ran successfully on attempt 1 of 3.\nIt printed:\n```\n2870\n```"


@pytest.mark.parametrize(
    ("text", "route"),
    [
        (
            "Write a Python program that prints the sum of the squares from 1 to 20, run it, tell me",
            "code",
        ),
        ("what is 123456789 * 987654321?", "code"),
        ("How many prime numbers are there below 10000?", "code"),
        ("Write fizzbuzz.py that prints FizzBuzz up to 15", "code"),
        ("Why does this print the wrong value?\n```python\nprint(0.1 + 0.2)\n```", "code"),
        ('def f(x):\n    """Return x doubled."""\n\nImplement this.', "code"),
        ("Écris un programme Python qui affiche les nombres pairs.", "code"),
        ("What is a closure in Python?", "answer"),
        ("hello", "answer"),
        ("Who are you?", "answer"),
        ("Search the web for the latest Python release", "search"),
        ("Summarize this: the budget was approved.", "summarize"),
        ("the weather in Paris", None),
    ],
)
def test_first_pass(text: str, route: str | None) -> None:
    assert guess_route(text) == route


def test_follow_ups_in_a_thread() -> None:
    thread = [HumanMessage("print the sum of squares"), AIMessage(REPORT, name="task_agent")]
    assert first_pass([*thread, HumanMessage("now make it go up to 30 instead")]) == "code"
    assert first_pass([*thread, HumanMessage("great, thanks!")]) == "answer"
    assert first_pass([*thread, HumanMessage("what does the second line of that code do?")]) == "answer"


def test_after_a_specialist_the_turn_ends_with_a_reply() -> None:
    assert first_pass([HumanMessage("x"), AIMessage("Summary [1]", name="summarize_agent")]) == "answer"
    assert first_pass([HumanMessage("x"), AIMessage("[1] hit", name="search_agent")]) is None
