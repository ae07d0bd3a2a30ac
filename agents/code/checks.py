"""Checks of a program: the user's own examples first, model-written ones as evidence only.

The user's examples are the specification: doctest lines (``>>> f(2)`` then ``5``) and sentences
such as "f(x) should return y" become assert checks. Checks a model writes may be wrong, so when
the program runs cleanly and only model-written checks fail, :func:`judge` asks the model for the
value once more (without showing it the program or the check) and keeps the side that agrees: a
check contradicted by both the program and the second prediction is dropped, not the program.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass

from langchain_core.messages import HumanMessage, SystemMessage

from agents.chat import ask_model
from agents.code.prompts import PREDICT_SYSTEM
from agents.context import Context

__all__ = ["FailedCheck", "failed_checks", "judge", "render_checks", "user_checks"]

logger = logging.getLogger(__name__)

_CALL = re.compile(r"\b([A-Za-z_]\w*)\(")
_SHOULD = re.compile(r"^\s*(?:should\s+(?:return|be|give|equal|output)|must\s+(?:return|be))\s*:?\s*", re.I)
_STATES = re.compile(r"^\s*(?:returns|gives|==|->|=>|→|is|equals)\s*:?\s*", re.I)
_NOT_TESTED = {"print", "len", "range", "input", "open", "str", "int", "list", "dict", "set", "sorted", "sum"}
_FAILED = re.compile(r"^CHECK (\d+) FAIL: (.*?)(?: \((.*)\))?$")
USER_HEADER = "# checks from the user's examples"
MODEL_HEADER = "# model-written checks"


def _literal(text: str) -> object:
    return ast.literal_eval(text)


def _shortest_literal(rest: str) -> str | None:
    """The shortest prefix of ``rest`` (cut at a clause boundary) that is a Python literal."""
    rest = rest.split("\n", 1)[0]
    cuts = sorted({m.start() for m in re.finditer(r",\s|\s+and\s|\s+but\s|\.\s|;|\s+for\s|\s+when\s", rest)})
    for end in [*cuts, len(rest)]:
        piece = rest[:end].strip().rstrip(".;,:")
        if not piece:
            continue
        try:
            _literal(piece)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return piece
    return None


def _call_at(text: str, start: int) -> str | None:
    """The balanced call expression starting at ``start`` (``name(...)``), if it parses."""
    depth = 0
    for i in range(text.index("(", start), len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                call = text[start : i + 1]
                try:
                    ast.parse(call, mode="eval")
                except SyntaxError:
                    return None
                return call
        elif text[i] == "\n":
            return None
    return None


def _stated(text: str) -> list[str]:
    """Asserts from sentences such as ``f(2) should return 5`` (a stated "should" wins over "returns")."""
    found: list[str] = []
    for match in _CALL.finditer(text):
        if match.group(1) in _NOT_TESTED:
            continue
        call = _call_at(text, match.start())
        if call is None:
            continue
        after = text[match.start() + len(call) :].split("\n", 1)[0]
        should = re.search(r"should\s+(?:return|be|give|equal)|must\s+(?:return|be)", after, re.I)
        tail = after[should.start() :] if should else after
        head = _SHOULD.match(tail) if should else _STATES.match(tail)
        if head is None:
            continue
        expected = _shortest_literal(tail[head.end() :])
        if expected is not None:
            found.append(f"assert {call} == {expected}")
    return found


def _doctests(text: str) -> list[str]:
    """Asserts (and setup lines) from ``>>>`` examples."""
    lines = text.splitlines()
    found: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith(">>> "):
            continue
        source = stripped[4:]
        expected_rows: list[str] = []
        for nxt in lines[i + 1 :]:
            row = nxt.strip()
            if not row or row.startswith(">>>") or row.startswith(('"""', "'''", "```")):
                break
            expected_rows.append(row)
        try:
            ast.parse(source)
        except SyntaxError:
            continue
        if not expected_rows:
            found.append(source)  # a setup line, run before the asserts
            continue
        expected = " ".join(expected_rows)
        try:
            _literal(expected)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        found.append(f"assert {source} == {expected}")
    return found


def user_checks(request: str) -> list[str]:
    """Checks from the user's own examples, in order, without repeats."""
    checks: list[str] = []
    for check in [*_doctests(request), *_stated(request)]:
        if check not in checks:
            checks.append(check)
    return checks


def render_checks(user: list[str], model: list[str]) -> str:
    """The checks file: the user's examples first, then the model's, each under its header."""
    parts: list[str] = []
    if user:
        parts += [USER_HEADER, *user]
    if model:
        parts += [MODEL_HEADER, *model]
    return "\n".join(parts) + "\n" if parts else ""


@dataclass(frozen=True)
class FailedCheck:
    """A failing check as the runner reported it."""

    number: int
    text: str
    detail: str


def failed_checks(output: str) -> list[FailedCheck]:
    """The ``CHECK n FAIL`` lines of a run's output."""
    found: list[FailedCheck] = []
    for row in output.splitlines():
        match = _FAILED.match(row.strip())
        if match:
            found.append(FailedCheck(int(match.group(1)), match.group(2), match.group(3) or ""))
    return found


def _program_value(check: FailedCheck) -> object:
    match = re.match(r".* returned (.+), expected .+$", check.detail)
    if not match:
        raise ValueError("no value")
    return _literal(match.group(1))


_PRINTS = re.compile(r"\b(print|prints|printed|display|show)\b", re.I)


async def judge(context: Context, request: str, check: FailedCheck) -> bool | None:
    """Whether ``check`` is wrong: True when a second, independent prediction agrees with the program,
    False when it agrees with the check, None when it settles nothing (unreadable, or neither side).

    A check that errs by itself (a name the request never mentions) or compares what cannot be read
    back is wrong: it cannot be evidence against the program.
    """
    text, _, error = check.text.partition(" -> ")
    if error:
        # Only a check calling what the program never defined (and the request never named) errs by
        # itself; an exception raised inside the program's function is the program's fault.
        missing = re.match(r"NameError: name '(\w+)'", error)
        called = {m.group(1) for m in _CALL.finditer(text)}
        if missing and missing.group(1) in called:
            return not re.search(rf"\b{missing.group(1)}\b", request)
        return False
    try:
        tree = ast.parse(text, mode="exec").body[0]
    except (SyntaxError, IndexError):
        return True
    if not isinstance(tree, ast.Assert) or not isinstance(tree.test, ast.Compare):
        return None
    call, expected_node = tree.test.left, tree.test.comparators[0]
    try:
        expected = _literal(ast.unparse(expected_node))
        actual = _program_value(check)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None  # compares something we cannot read back
    if actual is None and _PRINTS.search(request) and not re.search(r"\breturn", request, re.I):
        return True  # the request asks for printing; a check on a return value tests what was not asked
    question = (
        f"Task:\n{request}\n\nWhat is the exact value of `{ast.unparse(call)}` for a correct solution? "
        "Think step by step in at most three short lines, "
        "then give the last line as 'Value: <python literal>'."
    )
    try:
        reply = await ask_model(
            context, [SystemMessage(PREDICT_SYSTEM), HumanMessage(question)], stream=False
        )
    except Exception as exc:  # an unreachable model settles nothing
        logger.warning("second prediction failed: %s", exc)
        return None
    match = re.findall(r"value\s*:\s*(.+)", reply, re.I)
    try:
        predicted = _literal(match[-1].strip().strip("`").rstrip(".")) if match else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        predicted = None
    logger.info("check %d: predicted %r, program %r, check %r", check.number, predicted, actual, expected)
    if predicted is None or (predicted != expected and predicted != actual):
        return None
    return bool(predicted == actual)
