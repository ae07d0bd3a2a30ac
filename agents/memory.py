"""The user's preferences, remembered across threads in LangGraph's long-term store.

The Task Agent reads them at the start of each turn (``Runtime.store``) and writes one when the user
states it. What counts as stated is read with plain rules, not the model: "I prefer TypeScript",
"my preferred language is Python", "from now on use TypeScript", "default to Python". A one-off
request ("write this in TypeScript") is not a preference. Only the programming language is
remembered today; the Code Agent writes in it when the request names no language itself.

Items live in :data:`NAMESPACE` under key = preference name, value ``{"value": ..., "said": ...}``.
The namespace names no tenant or user: the server hands each run its tenant's own view of the store
(every tenant has its own ``("preferences",)``), and under ``langgraph dev`` the store is the
local one. A store that fails is logged and the turn goes on without memory.
"""

from __future__ import annotations

import logging
import re

from langgraph.store.base import BaseStore

__all__ = ["NAMESPACE", "recall", "remember", "stated_preferences", "without_preferences"]

logger = logging.getLogger(__name__)

NAMESPACE: tuple[str, ...] = ("preferences",)
_SAID_CHARS = 300

_LANG = r"(typescript|type\s+script|ts|deno|python3?|py)"
_STATED = [
    re.compile(
        rf"\bi\s+(?:really\s+|strongly\s+|usually\s+|generally\s+)?prefer\b[^.!?\n]{{0,40}}?\b{_LANG}\b", re.I
    ),
    re.compile(
        rf"\bmy\s+(?:preferred|favou?rite|default|usual|main)\s+(?:programming\s+)?language\s+is\s+{_LANG}\b",
        re.I,
    ),
    re.compile(
        rf"\b(?:always|from\s+now\s+on|by\s+default|in\s+future|going\s+forward)[,\s]+(?:please\s+)?"
        rf"(?:use|write|code|program)(?:\s+(?:it|code|everything|programs|them))?(?:\s+(?:in|with))?\s+{_LANG}\b",
        re.I,
    ),
    re.compile(
        rf"\b{_LANG}\s+(?:is|as)\s+my\s+(?:preferred|favou?rite|default)\s+(?:programming\s+)?language\b",
        re.I,
    ),
    re.compile(rf"\bdefault\s+to\s+{_LANG}\b", re.I),
]


def _language(word: str) -> str:
    word = re.sub(r"\s+", "", word.lower())
    return "typescript" if word in ("typescript", "ts", "deno") else "python"


def stated_preferences(text: str) -> dict[str, str]:
    """The preferences a user's message states (``{"language": "typescript"}``), or none."""
    for pattern in _STATED:
        found = pattern.search(text)
        if found:
            return {"language": _language(found.group(1))}
    return {}


def without_preferences(text: str) -> str:
    """The message with its statements of preference cut out (what else it asks for)."""
    for pattern in _STATED:
        text = pattern.sub(" ", text)
    return text


async def recall(store: BaseStore | None) -> dict[str, str]:
    """Every remembered preference, name -> value (empty without a store, or when it fails)."""
    if store is None:
        return {}
    try:
        items = await store.asearch(NAMESPACE, limit=50)
    except Exception as exc:  # memory is a help, never a reason for the turn to fail
        logger.warning("reading preferences failed: %s: %s", type(exc).__name__, exc)
        return {}
    return {item.key: str(item.value["value"]) for item in items if "value" in item.value}


async def remember(store: BaseStore | None, preferences: dict[str, str], said: str) -> bool:
    """Store each preference with the user's words; False when there is no store or it failed."""
    if store is None or not preferences:
        return False
    try:
        for name, value in preferences.items():
            await store.aput(NAMESPACE, name, {"value": value, "said": said[:_SAID_CHARS]}, index=False)
    except Exception as exc:
        logger.warning("storing preferences failed: %s: %s", type(exc).__name__, exc)
        return False
    return True
