"""Does the user want a web app built and hosted, of which kind, and what must it visibly do?

Read from the user's own words, deterministically: a page-like noun (web page, web app, site,
dashboard, ...) together with a hosting word (host, serve, put online, deploy, a link, ...). The
kind is a static page (one self-contained ``index.html``, the shape a small model writes most
reliably) unless the request names a Python file or asks for a Python / server-side app. Explicit
expectations become checks that come before the generic "every button does something":
quoted texts the page should show, a button when the request speaks of one, and a counter's
"button that adds one" (a number moving by one per click).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from tools.app_probe import AppExpectations

__all__ = ["AppKind", "AppRequest", "about_page", "app_expectations", "read_app_request", "wants_app"]

AppKind = Literal["static", "python"]

_PAGE = re.compile(
    r"\b(web ?pages?|web ?apps?|web ?applications?|web ?sites?|sites?|dashboards?|html pages?|"
    r"landing pages?|pages?|apps?|front ?ends?|ui)\b",
    re.I,
)
_HOST = re.compile(
    r"\b(host|hosts|hosted|hosting|deploy|deploys|deployed|publish|publishes|published|"
    r"serve (?:it|this|that|them)|put (?:it |that |this )?online|"
    r"(?:give|send|share|get) (?:me |us )?(?:a |the )?(?:link|url)|with a (?:link|url)|a (?:link|url) to it|"
    r"make it (?:available|accessible|reachable))\b",
    re.I,
)
_PYTHON = re.compile(r"\b(python|flask|fastapi|http\.server|back ?end|server[- ]side|api endpoints?)\b", re.I)
_HTML_FILE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.html?)\b", re.I)
_PY_FILE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[A-Za-z_][\w-]*\.py)\b")
_QUOTED = re.compile(
    r"\b(?:shows?|showing|displays?|displaying|says?|saying|reads?|reading|contains?|containing|"
    r"titled?|heading|text)\s+(?:the\s+(?:text|title|heading|message|words?)\s+)?"
    r"[\"“'‘]([^\"”'’\n]{1,80})[\"”'’]",
    re.I,
)
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10}
_STEP = r"(\d+|one|two|three|four|five|ten)\b(?!\s+(?:numbers?|values?|inputs?|fields?|items?))"
_OBJECT = r"(?:\s+(?:it|the\s+(?:count|counter|number|value|total|score)))?\s*(?:by\s+)?"
_UP = re.compile(
    rf"\b(?:adds?|adding|increments?|incrementing|increases?|increasing|raises?|counts? up|plus)"
    rf"(?:{_OBJECT}{_STEP}|\b)",
    re.I,
)
_DOWN = re.compile(
    rf"\b(?:subtracts?|decrements?|decreases?|lowers?|counts? down|minus)(?:{_OBJECT}{_STEP}|\b)", re.I
)
_CLICKS = re.compile(r"\b(button|click|clicks|clicking|press|tap)\b", re.I)
_COUNTER = re.compile(r"\b(count|counts|counter|counting|tally|score|clicks)\b", re.I)
_UI = re.compile(
    r"\b(buttons?|colou?rs?|styles?|css|fonts?|titles?|headings?|layout|inputs?|fields?|forms?|"
    r"background|theme|dark|light|bigger|smaller|larger|center|centre|align\w*|click\w*|shows?|"
    r"displays?|html|javascript|js)\b",
    re.I,
)


@dataclass(frozen=True)
class AppRequest:
    """The app the user asked for: its kind, the file to write, and what it must visibly do."""

    kind: AppKind
    path: str
    expectations: AppExpectations


def about_page(text: str) -> bool:
    """True when a follow-up request talks about a page (its buttons, colours, text, layout...)."""
    return bool(_PAGE.search(text) or _UI.search(text))


def wants_app(text: str) -> bool:
    """True when the request asks for a web page / app / site to be built and hosted (or linked)."""
    return bool(_PAGE.search(text) and _HOST.search(text))


def _step(found: re.Match[str]) -> float:
    word = (found.group(1) or "one").lower()
    return float(_WORDS[word]) if word in _WORDS else float(word)


def app_expectations(text: str) -> AppExpectations:
    """The checks the request states: quoted texts the page shows, a number a button moves."""
    texts = tuple(dict.fromkeys(m.group(1).strip() for m in _QUOTED.finditer(text) if m.group(1).strip()))
    delta: float | None = None
    if _CLICKS.search(text) and _COUNTER.search(text):  # a counter, not "a button that adds two numbers"
        up, down = _UP.search(text), _DOWN.search(text)
        if up is not None and (down is None or up.start() < down.start()):
            delta = _step(up)
        elif down is not None:
            delta = -_step(down)
    return AppExpectations(texts=texts, click_delta=delta, needs_button=bool(_CLICKS.search(text)))


def read_app_request(text: str, named: list[str]) -> AppRequest | None:
    """The app the request asks for, or None when it asks for no hosted app.

    ``named`` are the program files the request mentions (``agents.code.request.file_names``).
    """
    if not wants_app(text):
        return None
    html = _HTML_FILE.findall(text)
    python = [p for p in named if p.endswith(".py")] or _PY_FILE.findall(text)
    expectations = app_expectations(text)
    if python or (not html and _PYTHON.search(text)):
        return AppRequest("python", python[0] if python else "app.py", expectations)
    return AppRequest("static", html[0] if html else "index.html", expectations)
