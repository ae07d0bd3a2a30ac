"""Human approval before a sandbox run (``interrupt``), resumed with approve / edit / reject.

Resume values accepted: ``"approve"`` / ``"reject"`` strings, or a dict with ``action`` and, for
``edit``, the new ``code`` (saved as a new version authored by ``user``), for ``reject`` an optional
``reason``. Anything unrecognised counts as a rejection, so nothing runs without a clear yes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agents.context import Context
from tools.services import get_store

if TYPE_CHECKING:
    from agents.code_agent import CodeState

__all__ = ["approve", "parse_decision"]

logger = logging.getLogger(__name__)


def parse_decision(value: Any) -> tuple[str, str]:
    """Normalise a resume value to ``(action, payload)``: payload is the code (edit) or reason (reject)."""
    if isinstance(value, str):
        action = value.strip().lower()
        return (
            (action, "") if action in ("approve", "reject") else ("reject", f"unrecognised answer {value!r}")
        )
    if isinstance(value, dict):
        action = str(value.get("action", value.get("type", ""))).strip().lower()
        if action in ("approve", "accept", "yes"):
            return "approve", ""
        if action == "edit" and isinstance(value.get("code"), str) and value["code"].strip():
            return "edit", str(value["code"])
        if action == "reject":
            return "reject", str(value.get("reason", "") or "")
    return "reject", f"unrecognised answer {value!r}"


async def approve(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause for a human decision on the code about to run."""
    decision = interrupt(
        {
            "type": "approval",
            "attempt": state.attempts + 1,
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
