"""The Task Agent: routes each request, and ends the turn with a reply that tells the truth.

Routing is a deterministic first pass (``agents.routing``: code blocks, file names, verbs, follow-ups,
greetings) and, only when that decides nothing, the model's choice, asked as JSON with a schema where
the endpoint supports it (tagged ``nostream``: clients never see it as chat), read with a tolerant
parser and asked once more when unreadable. The specialist gets the user's own words; the model's
``task`` is only a note beside them. Each turn starts by reading the user's remembered preferences
from the long-term store (``agents.memory``) and storing one the message states; a message that
only states one is answered with a short confirmation, no model call. After the Code Agent the
reply is built from its structured result (``agents.reply``), never generated; other replies are
streamed from the model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from agents.chat import ask_model, text_of
from agents.context import Context
from agents.memory import recall, remember, stated_preferences, without_preferences
from agents.parsing import parse_json_object
from agents.prompts import RESPOND_SYSTEM, ROUTER_RETRY, ROUTER_SYSTEM
from agents.reply import render_code_reply
from agents.routing import first_pass, guess_route
from agents.state import Route, State

__all__ = [
    "ROUTE_SCHEMA",
    "Decision",
    "decide",
    "guess_route",
    "reply",
    "respond",
    "route_after_task",
    "task_agent",
]

logger = logging.getLogger(__name__)

ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "next": {"type": "string", "enum": ["code", "search", "summarize", "answer"]},
        "task": {"type": "string", "maxLength": 400},
    },
    "required": ["next"],
}

_ALIASES: dict[str, Route] = {
    "code": "code",
    "coder": "code",
    "code_agent": "code",
    "write_code": "code",
    "program": "code",
    "search": "search",
    "web": "search",
    "research": "search",
    "search_agent": "search",
    "lookup": "search",
    "summarize": "summarize",
    "summarise": "summarize",
    "summary": "summarize",
    "summarize_agent": "summarize",
    "answer": "answer",
    "respond": "answer",
    "reply": "answer",
    "final": "answer",
    "done": "done",
    "finish": "done",
    "end": "done",
    "stop": "done",
}
Decision = tuple[Route, str, str]
_MAX_CHARS = 2500
_LANGUAGE_NAMES = {"typescript": "TypeScript", "python": "Python"}


def _normalise(value: dict[str, Any] | None, raw: str) -> Decision | None:
    if value is None:
        found = re.search(r"""["']?next["']?\s*[:=]\s*["']?([A-Za-z_]+)""", raw)
        value = {"next": found.group(1)} if found else None
    if value is None:
        return None
    route = _ALIASES.get(str(value.get("next", value.get("route", ""))).strip().lower())
    if route is None:
        return None
    return route, str(value.get("task") or ""), str(value.get("answer") or "")


def _conversation(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The recent conversation, long texts cut, so a small context window suffices."""
    recent = messages[-12:]
    trimmed: list[BaseMessage] = []
    for message in recent:
        text = text_of(message)
        if len(text) > _MAX_CHARS:
            text = text[:_MAX_CHARS] + "\n[... cut ...]"
        if isinstance(message, HumanMessage):
            trimmed.append(HumanMessage(text))
        else:
            name = getattr(message, "name", None)
            trimmed.append(AIMessage(f"[{name}] {text}" if name else text))
    return trimmed


async def decide(context: Context, messages: Sequence[BaseMessage]) -> Decision | None:
    """Ask the model for the next step; one retry on an unreadable reply; None if both fail."""
    prompt: list[BaseMessage] = [SystemMessage(ROUTER_SYSTEM), *_conversation(messages)]
    bind: dict[str, Any] = {}
    if context.structured_output:
        bind["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "route", "schema": ROUTE_SCHEMA},
        }
    for attempt in (1, 2):
        try:
            raw = await ask_model(context, prompt, stream=False, **bind)
        except Exception as exc:  # endpoint refusing response_format, or a transient error
            logger.warning("router request failed (attempt %d): %s", attempt, exc)
            if bind:
                bind = {}
                continue
            raise
        decision = _normalise(parse_json_object(raw), raw)
        if decision is not None:
            return decision
        logger.info("unreadable router reply (attempt %d): %.200s", attempt, raw)
        prompt = [*prompt, AIMessage(raw), HumanMessage(ROUTER_RETRY)]
    return None


def _last_request(messages: Sequence[BaseMessage]) -> str:
    human = [m for m in messages if isinstance(m, HumanMessage)]
    return text_of(human[-1]) if human else ""


def _noted(preferences: dict[str, str], kept: bool) -> str:
    language = _LANGUAGE_NAMES.get(preferences.get("language", ""), preferences.get("language", ""))
    later = "in this conversation and later ones" if kept else "in this conversation (no memory store here)"
    return f"Noted: I will write code in {language} when you do not name a language, {later}."


async def _preferences_turn(
    state: State, runtime: Runtime[Context], text: str
) -> tuple[dict[str, Any], AIMessage | None]:
    """Recall the preferences, store one the message states; a confirmation if that is all it says.

    The thread's own (from earlier turns) stay under the stored ones, so a graph without a store
    still keeps a preference for the rest of the conversation.
    """
    remembered = {**state.preferences, **(await recall(runtime.store))}
    stated = stated_preferences(text)
    if not stated:
        return {"preferences": remembered}, None
    kept = await remember(runtime.store, stated, text)
    update: dict[str, Any] = {"preferences": {**remembered, **stated}}
    rest = without_preferences(text)
    only_preference = len(re.findall(r"\w+", rest)) <= 6 and guess_route(rest) in (None, "answer")
    return update, AIMessage(_noted(stated, kept), name="task_agent") if only_preference else None


async def task_agent(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Decide the next step of the current user turn."""
    messages = list(state.messages)
    new_turn = bool(messages) and isinstance(messages[-1], HumanMessage)
    steps = 0 if new_turn else state.steps
    if new_turn:
        memory, confirmation = await _preferences_turn(state, runtime, _last_request(messages))
        if confirmation is not None:
            return {**memory, "route": "done", "steps": steps + 1, "messages": [confirmation]}
        return {**memory, **(await _decide_turn(runtime, messages, new_turn, steps))}
    return await _decide_turn(runtime, messages, new_turn, steps)


async def _decide_turn(
    runtime: Runtime[Context], messages: Sequence[BaseMessage], new_turn: bool, steps: int
) -> dict[str, Any]:
    """The route of this step: by the request's signals, else by the model."""
    if steps >= runtime.context.max_steps:
        note = f"Stopped after {steps} steps (the limit for one request); the results so far are above."
        return {"route": "done", "steps": steps, "messages": [AIMessage(note, name="task_agent")]}
    decided = first_pass(messages)
    if decided is not None:
        logger.info("routed by the request's signals: %s", decided)
        return {"route": decided, "task": "", "steps": steps + 1}
    try:
        decision = await decide(runtime.context, messages)
    except Exception as exc:
        logger.warning("model unreachable for routing: %s", exc)
        failure = f"The model could not be reached ({type(exc).__name__}: {exc}). Please try again."
        return {"route": "done", "steps": steps + 1, "messages": [AIMessage(failure, name="task_agent")]}
    if decision is None:
        if not new_turn:
            return {"route": "answer", "task": "", "steps": steps + 1}
        failure = (
            "I could not understand the model's routing reply twice, so I stopped. "
            "Please rephrase the request (for example: 'write a Python program that ...')."
        )
        return {"route": "done", "steps": steps + 1, "messages": [AIMessage(failure, name="task_agent")]}
    route, task, _ = decision
    return {"route": route, "task": task, "steps": steps + 1}


async def reply(state: State) -> dict[str, Any]:
    """End the turn after the Code Agent with its outcome, rendered from structured state."""
    if state.code_result is None:
        text = "Failed: the Code Agent ended without a result."
    else:
        text = render_code_reply(state.code_result)
    return {"messages": [AIMessage(text, name="task_agent")], "route": "done"}


async def respond(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write the final reply when the Task Agent chose to answer without giving the text."""
    prompt: list[BaseMessage] = [SystemMessage(RESPOND_SYSTEM), *_conversation(list(state.messages))]
    try:
        text = await ask_model(runtime.context, prompt)
    except Exception as exc:
        text = f"The model could not be reached ({type(exc).__name__}: {exc})."
    return {"messages": [AIMessage(text.strip() or "(no answer)", name="task_agent")], "route": "done"}


def route_after_task(
    state: State,
) -> Literal["code_agent", "search_agent", "summarize_agent", "respond", "__end__"]:
    """Map the Task Agent's decision to the next node."""
    if state.route == "code":
        return "code_agent"
    if state.route == "search":
        return "search_agent"
    if state.route == "summarize":
        return "summarize_agent"
    if state.route == "answer":
        return "respond"
    return "__end__"
