"""Tolerant readers for what small models actually reply.

Models wrap JSON in ```json fences, add prose around it, use single quotes or trailing commas, and
sometimes forget the closing fence of a code block. These helpers recover what they can and return
``None`` instead of raising, so a malformed reply never crashes the graph.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["CodeBlock", "extract_cause", "extract_code_blocks", "parse_json_object", "pick_code"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PY_TAGS = {"python", "py", "python3"}
_TS_TAGS = {"typescript", "ts", "tsx", "javascript", "js", "deno"}
_HTML_TAGS = {"html", "htm", "xhtml"}
_HTML_PAGE = re.compile(r"(<!doctype html.*?</html>|<html.*?</html>)", re.I | re.S)


@dataclass(frozen=True)
class CodeBlock:
    """A fenced block: its language tag (lower case, may be empty) and its code."""

    tag: str
    code: str


def extract_code_blocks(text: str) -> list[CodeBlock]:
    """Return the fenced code blocks of ``text`` in order (an unclosed last fence counts)."""
    return [
        CodeBlock(m.group(1).lower(), m.group(2).strip("\n"))
        for m in _FENCE.finditer(text)
        if m.group(2).strip()
    ]


def _looks_like_python(text: str) -> bool:
    stripped = text.strip()
    if not stripped or "\n" not in stripped and not stripped.startswith(("print", "import", "def")):
        return False
    try:
        tree = ast.parse(stripped)
    except SyntaxError:
        return False
    return any(not isinstance(node, ast.Expr) or isinstance(node.value, ast.Call) for node in tree.body)


def pick_code(text: str, language: str) -> str | None:
    """The program in a reply: the longest block tagged for ``language`` (or untagged).

    Falls back to the whole reply when it has no fences but parses as Python, and for ``html``
    to the page (``<!DOCTYPE html>`` or ``<html>`` to ``</html>``) written without fences.
    """
    tags = {"python": _PY_TAGS, "html": _HTML_TAGS}.get(language, _TS_TAGS)
    blocks = extract_code_blocks(text)
    if language == "html" and not any(b.tag in tags or not b.tag for b in blocks):
        page = _HTML_PAGE.search(text)
        return page.group(1).strip() + "\n" if page else None
    tagged = [b for b in blocks if b.tag in tags]
    untagged = [b for b in blocks if not b.tag]
    candidates = tagged or untagged
    if candidates:
        return max(candidates, key=lambda b: len(b.code)).code + "\n"
    if language == "python" and not blocks and _looks_like_python(text):
        return text.strip() + "\n"
    return None


def extract_cause(text: str) -> str | None:
    """The model's one-sentence diagnosis (``Cause: ...``) before its patch, if it gave one."""
    match = re.search(r"cause\s*[:\-]\s*(.+)", text.split("```", 1)[0], re.IGNORECASE)
    if not match:
        return None
    sentence = match.group(1).strip()
    return sentence[:300] or None


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` span, honouring quotes, in order."""
    spans: list[str] = []
    depth, start, quote, escaped = 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'" and depth > 0:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    if depth > 0 and start >= 0:  # unclosed object at the end: try closing it
        spans.append(text[start:] + "}" * depth)
    return spans


def _load(candidate: str) -> dict[str, Any] | None:
    attempts = [candidate, re.sub(r",\s*([}\]])", r"\1", candidate)]
    for attempt in attempts:
        try:
            value = json.loads(attempt)
        except ValueError:
            pass
        else:
            return value if isinstance(value, dict) else None
    pythonish = re.sub(
        r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", candidate))
    )
    try:
        value = ast.literal_eval(pythonish)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model reply, tolerating fences, prose, single quotes, trailing commas."""
    if not text:
        return None
    sources = [b.code for b in extract_code_blocks(text)] + [text]
    for source in sources:
        for candidate in _balanced_objects(source):
            value = _load(candidate)
            if value is not None:
                return value
    return None
