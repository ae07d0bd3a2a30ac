"""The Code Agent's prompts for a hosted app: the first page or program, and its repair.

A static app is one self-contained ``index.html`` (CSS and JavaScript inline): measured with the
embedded 1.5B model it is the shape written right most often, and the platform serves it, so no
server code of the model's can fail. A Python app uses the standard library's ``http.server`` and
listens on ``$PORT``. Both prompts say how the page will be checked in the browser, and the repair
prompt gives the check's facts (problem, console errors, what each click did, the page's text, the
app's log) the way the run repair gives a traceback.
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
(http.server, no Flask, no FastAPI).
Reply with the whole program in ONE ```python code block.
The app listens on 127.0.0.1 at the port in the PORT environment variable: int(os.environ["PORT"]).
It serves its HTML page at "/" from a string in the program (there are no other files); links and \
fetch() calls in the page use relative URLs (no leading "/").
The page's JavaScript goes in a <script> tag of that HTML, defining every function its buttons call.
Every button must visibly change the text on the page when clicked."""

APP_SYSTEMS = {"static": STATIC_SYSTEM, "python": PYTHON_SYSTEM}
_FENCES = {"static": "html", "python": "python"}
_SHOWN_CHARS = 1200


def _checked(expectations: list[str]) -> str:
    wanted = ["it must load without JavaScript errors", *expectations]
    wanted.append("clicking each button must visibly change the page")
    return "It will be opened and clicked in a browser: " + "; ".join(wanted) + "."


def app_draft_messages(
    kind: str,
    request: str,
    path: str,
    current: str | None,
    expectations: list[str],
    *,
    note: str = "",
    earlier: str = "",
) -> list[BaseMessage]:
    """Ask for the app's first version (or a change to the current one)."""
    fence = _FENCES[kind]
    body = request_part(request, note, earlier)
    if current:
        body += (
            f"\n\nCurrent content of {path}:\n```{fence}\n{current.rstrip()}\n```\n"
            f"Change it as the request asks. Reply with the whole new {path}."
        )
    else:
        body += f"\n\nWrite the file {path}."
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
    path: str,
    code: str,
    facts: dict[str, Any] | None,
    expectations: list[str],
    note: str = "",
    *,
    earlier: str = "",
) -> list[BaseMessage]:
    """Ask for a corrected app, giving what the browser check (or the start) found."""
    fence = _FENCES[kind]
    found = render_app_failure(facts) if facts else note
    body = (
        f"{request_part(request, earlier=earlier)}\n\n"
        f"The file {path}:\n```{fence}\n{code.rstrip()}\n```\n\n"
        f"It failed.\n{found}\n{_checked(expectations)}\n\n{REPAIR_INSTRUCTIONS.format(fence=fence)}"
    )
    return [SystemMessage(APP_SYSTEMS[kind]), HumanMessage(body)]
