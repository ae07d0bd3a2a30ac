"""The Code Agent's final report: which attempt is the result, and what to tell the user."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.state import AttemptRecord

if TYPE_CHECKING:
    from agents.code_agent import CodeState

__all__ = ["best_attempt", "failing_checks", "report_text"]


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


def report_text(state: CodeState, best: AttemptRecord | None, *, restored_id: str | None) -> str:
    """A short report: outcome, attempts, versions, output of the result."""
    fence = "python" if state.language == "python" else "typescript"
    versions = ", ".join(state.versions) or "none"
    lines: list[str] = []
    if state.status == "rejected":
        lines.append(f"The run of {state.code_path} was rejected ({state.error}); nothing was run.")
    elif state.status == "error":
        lines.append(f"Could not run {state.code_path}: {state.error}.")
    elif best is not None and best.get("passed"):
        lines.append(
            f"{state.code_path} works: attempt {best['attempt']} of {state.attempts} passed"
            + (f" with {best.get('checks_total', 0)} checks." if best.get("checks_total") else ".")
        )
    else:
        last = state.history[-1] if state.history else None
        lines.append(f"FAILED: {state.code_path} still fails after {state.attempts} attempt(s) (the limit).")
        if last is not None:
            lines.append(f"Last error: {last.get('summary', '')}")
        if state.cause:
            lines.append(f"Model's diagnosis: {state.cause}")
        if best is not None:
            lines.append(
                f"Kept attempt {best['attempt']} as the result ({failing_checks(best)} failing check(s))"
                + (f", restored as version {restored_id}." if restored_id else ".")
            )
    lines.append(f"Versions written: {versions}.")
    if best is not None:
        output = (best.get("output") or "").strip()
        if output:
            lines.append(f"Output of attempt {best['attempt']}:\n```\n{output}\n```")
        lines.append(f"Code ({state.code_path}):\n```{fence}\n{best.get('code', '').rstrip()}\n```")
    return "\n".join(lines)
