"""The Code Agent's result: which attempt is kept, and the facts of the outcome (``CodeResult``).

The result is structured state, not text: the Task Agent's final reply (``agents.reply``) is built
from it, so what the user reads is what happened (passed or failed, the program's own output).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agents.code.state import CodeState
from agents.context import Context
from agents.state import AttemptRecord, CodeResult
from tools.services import get_store

__all__ = ["best_attempt", "code_result", "failing_checks", "report"]


def failing_checks(record: AttemptRecord) -> int:
    """Failed checks, counting a crash of the program itself as one more."""
    crashed = record.get("error_class") not in (None, "AssertionError")
    return int(record.get("checks_failed", 0)) + (1 if crashed else 0)


def best_attempt(history: list[AttemptRecord]) -> AttemptRecord | None:
    """The passing attempt, else the one with the fewest failing checks (latest on ties)."""
    ran = [r for r in history if r.get("version_ids")]
    if not ran:
        return None
    return max(ran, key=lambda r: (bool(r.get("passed")), -failing_checks(r), int(r.get("attempt", 0))))


def code_result(
    state: CodeState, best: AttemptRecord | None, version_id: str | None, max_attempts: int
) -> CodeResult:
    """The outcome as facts: status, attempts, the kept code and what it printed, file and version."""
    last = state.history[-1] if state.history else None
    if state.status == "rejected":
        status, error = "rejected", state.error
    elif state.status == "error":
        status, error = "error", state.error
    elif best is not None and best.get("passed"):
        status, error = "passed", ""
    else:
        status, error = "failed", (last.get("summary", "") if last else state.error) or "no code was produced"
    result = CodeResult(
        status=status,  # type: ignore[typeddict-item]
        path=state.code_path,
        version_id=version_id or "",
        language=state.language,
        attempts=state.attempts,
        max_attempts=max_attempts,
        error=error,
        user_checks=len(state.user_checks),
        dropped_checks=list(state.dropped_checks),
        files=sorted({state.code_path, *state.extra, *([state.tests_path] if state.tests else [])}),
    )
    shown = best if status != "failed" or best is not None else last
    if shown is not None:
        result["attempt"] = int(shown.get("attempt", 0))
        result["code"] = str(shown.get("code", ""))
        result["printed"] = str(shown.get("printed", ""))
        result["checks_total"] = int(shown.get("checks_total", 0))
        result["checks_failed"] = int(shown.get("checks_failed", 0))
    elif state.code:
        result["code"] = state.code
    if state.app_kind:
        result.update(_app_result(state))
    return result


def _app_result(state: CodeState) -> CodeResult:
    """The app's fate: checked and running (with its link), failed and removed, or never hosted."""
    check = state.app_check if state.app_check in ("passed", "not_hosted", "unchecked") else "failed"
    result = CodeResult(app_kind=state.app_kind or "", app_check=check)  # type: ignore[typeddict-item]
    if check in ("passed", "unchecked") and state.app_id:
        result["app_id"] = state.app_id
        result["app_link"] = state.app_link
        result["app_link_expires_at"] = state.app_link_expires_at
        result["app_expires_at"] = state.app_expires_at
        result["app_checked"] = list(state.app_checked)
    return result


async def report(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pick the best attempt, make it the current version, and hand back the outcome's facts."""
    update: dict[str, Any] = {}
    best = best_attempt(state.history)
    last_ids = state.history[-1].get("version_ids", []) if state.history else []
    version_id = state.files.get(state.code_path)
    if best is not None and best.get("version_ids") and best.get("version_ids") != last_ids:
        store = await get_store(runtime.context)
        restored = await store.rollback(
            state.workspace_id or "", state.code_path, best["version_ids"][0], author="code_agent"
        )
        update["files"] = {restored.path: restored.id}
        update["versions"] = [*state.versions, restored.id]
        version_id = restored.id
    update["code_result"] = code_result(state, best, version_id, runtime.context.max_attempts)
    return update
