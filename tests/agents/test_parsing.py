"""Tolerant parsing of model replies and the log analysis used by the repair loop."""

from __future__ import annotations

import pytest

from agents.code.diagnosis import diagnose, render_diagnosis
from agents.parsing import extract_cause, parse_json_object, pick_code
from sandbox.base import EndReason, RunResult


@pytest.mark.parametrize(
    "reply",
    [
        '{"next": "code", "task": "t"}',
        'Sure!\n```json\n{"next": "code", "task": "t"}\n```\nHope this helps.',
        "{'next': 'code', 'task': 't'}",
        '{"next": "code", "task": "t",}',
        'I choose {"next": "code", "task": "t"} because it needs code',
        '{"next": "code", "task": "t"',
    ],
)
def test_json_variants(reply: str) -> None:
    assert parse_json_object(reply) == {"next": "code", "task": "t"}


@pytest.mark.parametrize("reply", ["", "no json here", "}}} {{{", "[1, 2]", "{not: valid: at all"])
def test_json_garbage_is_none(reply: str) -> None:
    assert parse_json_object(reply) is None


def test_pick_code() -> None:
    reply = "Here:\n```python\nprint(1)\n```\nUsage:\n```\nx\n```"
    assert pick_code(reply, "python") == "print(1)\n"
    assert pick_code("```ts\nconsole.log(1)\n```", "typescript") == "console.log(1)\n"
    assert pick_code("```python\nprint('unclosed')\n", "python") == "print('unclosed')\n"
    assert pick_code("def f():\n    return 2\nprint(f())", "python") == "def f():\n    return 2\nprint(f())\n"
    assert pick_code("I am sorry, I cannot help with that.", "python") is None
    assert extract_cause("Cause: off by one in the loop.\n```python\n```") == "off by one in the loop."


def test_diagnose_timeout_and_deno() -> None:
    hung = RunResult(exit_code=-9, stdout="", stderr="", reason=EndReason.TIMEOUT)
    assert diagnose(hung, {"main.py": "while True: pass\n"}, "python").error_class == "Timeout"
    deno = RunResult(
        exit_code=1,
        stdout="",
        stderr="error: Uncaught (in promise) TypeError: x.map is not a function\n    at file:///w/main.ts:2:3\n",
    )
    found = diagnose(deno, {"main.ts": "const x = 1;\nx.map(String);\n"}, "typescript")
    assert (found.error_class, found.line, found.line_text) == ("TypeError", 2, "x.map(String);")
    assert "Failing line 2 of main.ts: x.map(String);" in render_diagnosis(found)
