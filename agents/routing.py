"""The Task Agent's deterministic first pass: signals in the request that decide the route alone.

A small model asked "code or answer?" answers arithmetic and "what does this print?" from its head;
requests that carry code, name a file, ask for a hosted web page or app, or ask to write / run / fix /
test / implement / compute are therefore sent to the Code Agent without asking it. Greetings and
conceptual questions go to the reply; explicit search and summary requests to their agents. Only
what none of these signals covers is left to the model's choice (``agents.task_agent``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agents.chat import text_of
from agents.code.app_request import wants_app
from agents.code.request import file_names, pasted_code, without_code
from agents.state import Route

__all__ = ["SPECIALISTS", "first_pass", "guess_route"]

SPECIALISTS = ("code_agent", "search_agent", "summarize_agent")

_CODE_VERBS = re.compile(
    r"\b(write|writing|implement|fix|debug|refactor|run|execute|compute|calculate|count|test|tests|convert|"
    r"translate|code|program|script|snippet|function|algorithm|print|prints|generate|create|make|build|sort|"
    r"parse|"
    r"écris|écrire|programme|calcule|calculer|schreibe|berechne|funktion|programm|escribe|programa|calcula|"
    r"función|funcion)\b",
    re.I,
)
_COMPUTE = re.compile(
    r"\d\s*(?:[-+*/%^]|\*\*)\s*\d|\b(how many|sum of|product of|average of|factorial|fibonacci|prime|"
    r"digits of|power of|squared|cubed|square root|catalan)\b",
    re.I,
)
_SEARCH = re.compile(
    r"\b(search|look (?:it )?up|look up|google|news|latest|what'?s new|documentation|docs|articles?|"
    r"who maintains|busca|recherche|suche)\b",
    re.I,
)
_SUMMARY = re.compile(
    r"\b(summari[sz]e|summary|tl;?dr|condense|résume|résumé|zusammenfass\w*|resume)\b", re.I
)
_GREETING = re.compile(
    r"^\W*(hi|hello|hey|thanks?|thank you|cheers|bye|good (morning|evening|afternoon)|bonjour|hola|hallo|"
    r"ok|okay|great|cool|who are you|what can you do)\b",
    re.I,
)
_CONCEPT = re.compile(
    r"^\W*(what is|what are|what does|what's|explain|why|when should|how does|how do|what's the difference|"
    r"difference between|is it|can you explain|is|are|should i|which|do you|does it|can i)\b",
    re.I,
)
_FOLLOW_UP = re.compile(
    r"\b(again|instead|now|also|too|add|change|rename|make it|use|try|retry|rewrite|update|extend|"
    r"translate|port|speed|faster)\b",
    re.I,
)

Decided = Literal["code", "search", "summarize", "answer"]


_NOUNS = {
    "code",
    "program",
    "script",
    "function",
    "snippet",
    "algorithm",
    "programme",
    "funktion",
    "programm",
    "programa",
    "función",
    "funcion",
}
_REPORT = re.compile(r"^(Done|Failed|Not run|Not hosted|Hosted, not checked):")


def _after_code(messages: Sequence[BaseMessage]) -> bool:
    """True when the turn before the request ended with a program (a follow-up may change it)."""
    human = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if len(human) < 2:
        return False
    before = messages[human[-2] + 1 : human[-1]]
    return any(
        isinstance(m, AIMessage) and ("```" in text_of(m) or _REPORT.match(text_of(m))) for m in before
    )


def first_pass(messages: Sequence[BaseMessage]) -> Decided | None:
    """The route the request's own signals decide, or None to ask the model."""
    if not messages:
        return "answer"
    last = messages[-1]
    if not isinstance(last, HumanMessage):
        # A specialist has reported: the turn ends with a reply (search may still want a summary).
        name = getattr(last, "name", None)
        return None if name == "search_agent" else "answer"
    text = text_of(last)
    prose = without_code(text)
    if "```" in text or pasted_code(text, "python") is not None:
        return "code"
    if file_names(text) or wants_app(prose):
        return "code"
    if _SUMMARY.search(prose):
        return "summarize"
    code_verb = _CODE_VERBS.search(prose)
    if _SEARCH.search(prose) and not code_verb:
        return "search"
    if _after_code(messages) and not _CONCEPT.match(prose) and _FOLLOW_UP.search(prose):
        return "code"
    if _GREETING.match(prose) and len(prose) < 60:
        return "answer"
    verbs = {m.lower() for m in _CODE_VERBS.findall(prose)}
    if _CONCEPT.match(prose) and not _COMPUTE.search(prose) and verbs <= _NOUNS:
        return "answer"
    if code_verb or _COMPUTE.search(prose):
        return "code"
    return None


def guess_route(text: str) -> Route | None:
    """The first pass on a single request (None when nothing in it decides)."""
    return first_pass([HumanMessage(text)])
