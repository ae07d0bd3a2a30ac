"""What the user's request says about files: names, language, pasted code, earlier turns.

The Code Agent works from the user's own words (the Task Agent's note is only an addition), so the
request is read here for what a programmer would take from it: the file names it mentions
(``fizzbuzz.py``, ``app.ts``), the code pasted into it (fenced or not), and the language.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agents.chat import text_of
from agents.parsing import extract_code_blocks

__all__ = [
    "Request",
    "blocks_by_file",
    "earlier_turns",
    "file_names",
    "language_of",
    "pasted_code",
    "read_request",
    "without_code",
]

_FILE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[A-Za-z_][\w-]*\.(?:py|ts|mts))\b")
_TS_WORDS = re.compile(r"\b(typescript|deno)\b|\.ts\b", re.I)
_PY_WORDS = re.compile(r"\bpython3?\b|\.py\b", re.I)
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)
_CODE_START = re.compile(r"^(?:async\s+def|def|class|import|from\s+\S+\s+import|@\w+)\b")
_PY_TAGS = {"", "python", "py", "python3"}
_TS_TAGS = {"typescript", "ts", "tsx", "javascript", "js", "deno"}
_MAX_EARLIER = 1500


@dataclass(frozen=True)
class Request:
    """The request as the Code Agent uses it."""

    text: str
    """The user's last message, verbatim."""
    files: list[str]
    language: str
    pasted: str | None
    earlier: str


def without_code(text: str) -> str:
    """The prose of a message (fenced blocks removed), where file names and verbs are looked for."""
    return _FENCED.sub(" ", text)


def file_names(text: str) -> list[str]:
    """File names the prose mentions, in order, without repeats."""
    seen: list[str] = []
    for name in _FILE.findall(without_code(text)):
        if name not in seen:
            seen.append(name)
    return seen


def language_of(text: str, files: Sequence[str], default: str = "python") -> str:
    """The language a named file, a code block or the words say; ``default`` when they say none.

    ``default`` is the user's remembered preference (``agents.memory``), else ``python``.
    """
    if files:
        return "typescript" if files[0].endswith((".ts", ".mts")) else "python"
    tags = {b.tag for b in extract_code_blocks(text)}
    if tags & _TS_TAGS or _TS_WORDS.search(text):
        return "typescript"
    if default == "python" or tags & _PY_TAGS or _PY_WORDS.search(text):
        return "python"
    return "python" if _unfenced_python(text) is not None else default


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _unfenced_python(text: str) -> str | None:
    """Python pasted without fences: from the first ``def`` / ``class`` / ``import`` line on."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return None
    for end in range(len(lines), start, -1):
        chunk = "\n".join(lines[start:end]).rstrip()
        if chunk and _parses(chunk):
            return chunk + "\n"
    return None


def pasted_code(text: str, language: str) -> str | None:
    """The program pasted into the request (the longest block in the language), if any."""
    tags = _TS_TAGS if language == "typescript" else _PY_TAGS
    blocks = [b for b in extract_code_blocks(text) if b.tag in tags]
    if blocks:
        return max(blocks, key=lambda b: len(b.code)).code.rstrip() + "\n"
    if language == "python" and "```" not in text:
        return _unfenced_python(text)
    return None


def earlier_turns(messages: Sequence[BaseMessage], limit: int = 4) -> str:
    """The turns before the last request (user messages and final replies), newest last, bounded."""
    human_indexes = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if len(human_indexes) < 2:
        return ""
    rows: list[str] = []
    for message in messages[: human_indexes[-1]]:
        if isinstance(message, HumanMessage):
            rows.append(f"User: {text_of(message).strip()}")
        elif isinstance(message, AIMessage) and getattr(message, "name", None) == "task_agent":
            rows.append(f"Assistant: {text_of(message).strip()}")
    text = "\n".join(rows[-limit:])
    return text if len(text) <= _MAX_EARLIER else "..." + text[-_MAX_EARLIER:]


def read_request(messages: Sequence[BaseMessage], default_language: str = "python") -> Request:
    """Read the last user message of ``messages`` (and what came before it).

    ``default_language``: the language when the request names none (the user's preference).
    """
    human = [m for m in messages if isinstance(m, HumanMessage)]
    text = text_of(human[-1]) if human else ""
    files = file_names(text)
    language = language_of(text, files, default_language)
    return Request(
        text=text,
        files=files,
        language=language,
        pasted=pasted_code(text, language),
        earlier=earlier_turns(messages),
    )


def blocks_by_file(reply: str, names: Sequence[str]) -> dict[str, str]:
    """Code blocks of a multi-file reply, keyed by the file name just before them or in their first line."""
    found: dict[str, str] = {}
    for match in re.finditer(r"```[^\n]*\n(.*?)(?:```|\Z)", reply, re.S):
        code = match.group(1)
        before = reply[: match.start()].rstrip().splitlines()[-1:] or [""]
        first = code.split("\n", 1)[0]
        for name in names:
            base = name.split("/")[-1]
            if name not in found and (
                base in before[0] or (base in first and first.lstrip().startswith(("#", "//")))
            ):
                found[name] = code.rstrip() + "\n"
                break
    return found
