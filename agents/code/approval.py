"""Human approval before a sandbox run (``interrupt``), in LangChain's human-in-the-loop shape.

The interrupt value carries ``action_requests`` (one ``run_code`` action with the path, attempt
and code) and ``review_configs`` (approve / edit / reject allowed), as agent-chat-ui expects, plus
the flat fields (``type``, ``path``, ``code``, ...) older clients and the built-in web UI read.

Resume values accepted: ``{"decisions": [{"type": "approve" | "edit" | "reject", ...}]}`` (an edit
carries ``edited_action.args.code``, a reject an optional ``message``), and the older forms: the
strings ``"approve"`` / ``"reject"`` or ``{"action": ..., "code" | "reason": ...}``. An edit is saved
as a new version authored by ``user``. Anything unrecognised counts as a rejection, so nothing runs
without a clear yes.
"""

from __future__ import annotations

import logging
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agents.code.state import CodeState
from agents.context import Context
from tools.services import get_store

__all__ = ["ACTION", "approve", "parse_decision"]

logger = logging.getLogger(__name__)

ACTION = "run_code"


def _from_decision(decision: dict[str, Any]) -> tuple[str, str] | None:
    kind = str(decision.get("type", decision.get("action", ""))).strip().lower()
    if kind in ("approve", "accept", "yes"):
        return "approve", ""
    if kind == "edit":
        edited = decision.get("edited_action") or {}
        args = edited.get("args", {}) if isinstance(edited, dict) else {}
        code = args.get("code") if isinstance(args, dict) else None
        code = code if isinstance(code, str) else decision.get("code")
        if isinstance(code, str) and code.strip():
            return "edit", code
    if kind == "reject":
        return "reject", str(decision.get("message", decision.get("reason", "")) or "")
    return None


def parse_decision(value: Any) -> tuple[str, str]:
    """Normalise a resume value to ``(action, payload)``: payload is the code (edit) or reason (reject)."""
    if isinstance(value, str):
        action = value.strip().lower()
        return (
            (action, "") if action in ("approve", "reject") else ("reject", f"unrecognised answer {value!r}")
        )
    if isinstance(value, dict):
        decisions = value.get("decisions")
        if isinstance(decisions, list) and decisions and isinstance(decisions[0], dict):
            value = decisions[0]
        found = _from_decision(value)
        if found is not None:
            return found
    return "reject", f"unrecognised answer {value!r}"


async def approve(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause for a human decision on the code about to run."""
    attempt = state.attempts + 1
    args = {"path": state.code_path, "attempt": attempt, "code": state.code}
    decision = interrupt(
        {
            "action_requests": [
                {
                    "name": ACTION,
                    "args": args,
                    "description": (
                        f"Host {state.code_path} (attempt {attempt}) as an app and check it in a browser."
                        if state.app_kind
                        else f"Run {state.code_path} (attempt {attempt}) in the sandbox."
                    ),
                }
            ],
            "review_configs": [{"action_name": ACTION, "allowed_decisions": ["approve", "edit", "reject"]}],
            "type": "approval",
            "attempt": attempt,
            "path": state.code_path,
            "version_id": state.files.get(state.code_path),
            "code": state.code,
            "actions": ["approve", "edit", "reject"],
        }
    )
    action, payload = parse_decision(decision)
    logger.info("run approval: %s", action)
    if action == "approve":
        return {}
    if action == "edit":
        store = await get_store(runtime.context)
        edited = payload if payload.endswith("\n") else payload + "\n"
        saved = await store.write(
            state.workspace_id or "", state.code_path, edited, author="user", message="edited before run"
        )
        return {"code": edited, "files": {saved.path: saved.id}, "versions": [*state.versions, saved.id]}
    return {"status": "rejected", "error": payload or "rejected by the user"}
