"""Canned model replies shared by the agent tests (what a small model plausibly answers)."""

from __future__ import annotations

import json

__all__ = [
    "BROKEN_ADD",
    "CHECKS",
    "FIXED_ADD",
    "answer",
    "fenced",
    "route",
]

BROKEN_ADD = "def add(a, b):\n    total = a + b\n    return totl\n\nprint(add(2, 3))\n"
FIXED_ADD = "def add(a, b):\n    total = a + b\n    return total\n\nprint(add(2, 3))\n"
CHECKS = "```python\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(0, 0) == 0\n```"


def fenced(code: str, lang: str = "python", prose: str = "Here is the program:") -> str:
    """A reply the way models write them: prose, then a fenced block."""
    return f"{prose}\n```{lang}\n{code}```\nThis prints the result."


def route(next_step: str, task: str = "", answer: str = "") -> str:
    """A router reply as JSON."""
    body: dict[str, str] = {"next": next_step}
    if task:
        body["task"] = task
    if answer:
        body["answer"] = answer
    return json.dumps(body)


def answer(text: str) -> str:
    """A router reply that ends the turn with ``text``."""
    return route("answer", answer=text)
