"""The Code Agent's prompts for a hosted app: the first page or program, and its repair.

A static app is one self-contained ``index.html`` (CSS and JavaScript inline): measured with the
embedded 1.5B model it is the shape written right most often, and the platform serves it, so no
server code of the model's can fail. A Python app is two files, ``app.py`` (the standard library's
``http.server`` on ``$PORT``) and the ``index.html`` it serves: asked for one file with the page in
a string, the small model still read a missing ``index.html`` from disk, and no repair changed that.
Both prompts say how the page will be checked in the browser, and the repair prompt gives the
check's facts (problem, console errors, what each click did, the page's text, the app's log) the
way the run repair gives a traceback.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.code.prompts import REPAIR_INSTRUCTIONS, request_part

__all__ = ["APP_SYSTEMS", "app_draft_messages", "app_repair_messages", "render_app_failure"]

STATIC_SYSTEM = """You write small, complete web pages: ONE HTML file with its CSS in a <style> tag and \
its JavaScript in a <script> tag.
Reply with the whole page in ONE ```html code block.
No external files, no CDN links, no frameworks. Keep the CSS short.
Use <input> elements for what the user types. Every button must visibly change the text on the page \
when clicked (never use alert())."""

PYTHON_SYSTEM = """You write small, complete web apps in Python 3 with the standard library only \
(http.server, no Flask, no FastAPI): two files, app.py (the server) and index.html (its page).
Reply with each file in its own code block, its file name on the line before the block.
app.py listens on 127.0.0.1 at the port in the PORT environment variable: int(os.environ["PORT"]), \
and serves index.html at "/". Links and fetch() calls in the page use relative URLs (no leading "/").
The page's JavaScript goes in a <script> tag of index.html, defining every function its buttons call.
Every button must visibly change the text on the page when clicked."""

APP_SYSTEMS = {"static": STATIC_SYSTEM, "python": PYTHON_SYSTEM}
_FENCES = {"static": "html", "python": "python"}
_SHOWN_CHARS = 1200


def _checked(expectations: list[str]) -> str:
    wanted = ["it must load without JavaScript errors", *expectations]
    wanted.append("clicking each button must visibly change the page")
    return "It will be opened and clicked in a browser: " + "; ".join(wanted) + "."


def _fence_of(path: str) -> str:
    return "html" if path.endswith((".html", ".htm")) else "python"


def _files(files: dict[str, str]) -> str:
    return "\n".join(f"{p}:\n```{_fence_of(p)}\n{c.rstrip()}\n```" for p, c in files.items())


_EACH = "each in its own code block with its file name on the line before it"


def _reply_with(paths: list[str]) -> str:
    if len(paths) == 1:
        return f"the whole new {paths[0]}"
    return f"the whole new files {' and '.join(paths)}, {_EACH}"


def app_draft_messages(
    kind: str,
    request: str,
    path: str,
    current: dict[str, str],
    expectations: list[str],
    *,
    also: list[str] | None = None,
    note: str = "",
    earlier: str = "",
) -> list[BaseMessage]:
    """Ask for the app's first version (or a change to ``current``: path -> content, when it exists).

    ``also`` are the app's other files, written in the same reply (``index.html`` of a Python app).
    """
    paths = [path, *(also or [])]
    body = request_part(request, note, earlier)
    if current:
        body += f"\n\nCurrent content of {_files(current)}\n"
        body += f"Change it as the request asks. Reply with {_reply_with(paths)}."
    elif len(paths) == 1:
        body += f"\n\nWrite the file {path}."
    else:
        body += f"\n\nWrite the files {' and '.join(paths)}, {_EACH}."
    body += "\n" + _checked(expectations)
    return [SystemMessage(APP_SYSTEMS[kind]), HumanMessage(body)]


def render_app_failure(facts: dict[str, Any]) -> str:
    """The failed check (or start) as the facts section of a repair prompt."""
    parts = [f"The browser check found: {facts.get('problem', 'failure')}: {facts.get('message', '')}"]
    console = facts.get("console_errors") or []
    if console:
        parts.append("JavaScript console errors:\n" + "\n".join(f"- {line}" for line in console[:6]))
    steps = facts.get("steps") or []
    if steps:
        parts.append("What the check did:\n" + "\n".join(f"- {line}" for line in steps[:12]))
    page = str(facts.get("page_text", "")).strip()
    if page:
        parts.append("The page showed:\n" + page[:_SHOWN_CHARS])
    log = str(facts.get("log_tail", "")).strip()
    if log:
        parts.append("The app's log (end):\n" + log[-_SHOWN_CHARS:])
    return "\n".join(parts)


def app_repair_messages(
    kind: str,
    request: str,
    files: dict[str, str],
    facts: dict[str, Any] | None,
    expectations: list[str],
    note: str = "",
    *,
    earlier: str = "",
) -> list[BaseMessage]:
    """Ask for a corrected app (``files``: path -> content, the entry first), given what failed."""
    found = render_app_failure(facts) if facts else note
    if len(files) == 1:
        instructions = REPAIR_INSTRUCTIONS.format(fence=_FENCES[kind])
    else:
        instructions = (
            'First write one sentence starting with "Cause:" that says why it fails.\n'
            f"Then give {_reply_with(list(files))}."
        )
    body = (
        f"{request_part(request, earlier=earlier)}\n\nThe file {_files(files)}\n\n"
        f"It failed.\n{found}\n{_checked(expectations)}\n\n{instructions}"
    )
    return [SystemMessage(APP_SYSTEMS[kind]), HumanMessage(body)]
