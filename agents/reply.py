"""The Task Agent's final reply after the Code Agent: built from structured state, never generated.

A model asked to sum up a run tends to call failing code working; this text is assembled from the
Code Agent's ``CodeResult`` only: the outcome (passed / failed / not run), the attempts used, the
program's own output quoted verbatim, the file, its version and the code. A failed run always says
``Failed`` and shows the error. For a hosted app it says whether the browser check passed and
gives the signed link only for an app that runs; a failed or unchecked app is never called working.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agents.state import CodeResult

__all__ = ["render_app_reply", "render_code_reply"]

_MAX_OUTPUT = 2000


def _block(text: str, fence: str = "") -> str:
    body = text.rstrip("\n")
    if len(body) > _MAX_OUTPUT:
        body = "...\n" + body[-_MAX_OUTPUT:]
    ticks = "````" if "```" in body else "```"
    return f"{ticks}{fence}\n{body}\n{ticks}"


def _checks(result: CodeResult) -> str:
    total = int(result.get("checks_total", 0))
    if not total:
        return ""
    mine = int(result.get("user_checks", 0))
    parts = [f"{total - int(result.get('checks_failed', 0))} of {total} checks passed"]
    if mine:
        parts.append(f"{min(mine, total)} from your examples")
    return " (" + ", ".join(parts) + ")"


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC") if epoch else ""


def _code(result: CodeResult, path: str, kept: str) -> str:
    version = result.get("version_id", "")
    where = f"{path}, version {version}" if version else path
    fence = {"typescript": "typescript", "html": "html"}.get(str(result.get("language")), "python")
    return f"Code ({kept}{where}):\n{_block(str(result['code']), fence)}"


def render_app_reply(result: CodeResult) -> str:
    """The user-facing message for a hosted-app job: checked and linked, failed, or not hosted."""
    path = result.get("path", "the app")
    check = result.get("app_check", "failed")
    attempts, limit = int(result.get("attempts", 0)), int(result.get("max_attempts", 0))
    attempt = result.get("attempt", attempts)
    lines: list[str] = []
    if check == "passed":
        lines.append(f"Done: {path} is hosted and passed its browser check on attempt {attempt} of {limit}.")
        lines.append(f"Open it: {result.get('app_link', '')}")
        expires = result.get("app_expires_at")
        lasts = f"the app runs until {_when(expires)}" if expires else "the app is permanent"
        lines.append(f"(The link works until {_when(result.get('app_link_expires_at'))}; {lasts}.)")
        checked = result.get("app_checked") or []
        if checked:
            lines.append("What the check did:\n" + "\n".join(f"- {step}" for step in checked))
    elif check == "unchecked":
        lines.append(f"Hosted, not checked: {path} runs, but {result.get('error', '')}; it may not work.")
        lines.append(f"Open it: {result.get('app_link', '')}")
    elif check == "not_hosted":
        version = result.get("version_id", "")
        lines.append(f"Not hosted: {result.get('error', '')}.")
        written = f"{path}, version {version}" if version else path
        lines.append(f"The app was written to {written}; it was neither hosted nor checked.")
    else:
        lines.append(
            f"Failed: {path} still fails its browser check after {attempts} of {limit} attempts; "
            "no app was left running."
        )
        lines.append(f"Error: {result.get('error', '')}")
    if result.get("code"):
        kept = "" if check == "passed" else f"kept from attempt {attempt}, "
        lines.append(_code(result, path, kept))
    return "\n".join(lines)


def render_code_reply(result: CodeResult) -> str:
    """The user-facing message for one Code Agent job."""
    if result.get("app_kind") and result.get("status") != "rejected":
        return render_app_reply(result)
    path = result.get("path", "the program")
    status = result.get("status", "failed")
    attempts, limit = int(result.get("attempts", 0)), int(result.get("max_attempts", 0))
    lines: list[str] = []
    if status == "passed":
        lines.append(
            f"Done: {path} ran successfully on attempt {result.get('attempt', attempts)} of {limit}"
            f"{_checks(result)}."
        )
    elif status == "rejected":
        lines.append(f"Not run: the run of {path} was rejected ({result.get('error', '')}); nothing was run.")
    elif status == "error":
        lines.append(f"Failed: {path} could not be run: {result.get('error', '')}.")
    else:
        lines.append(f"Failed: {path} still fails after {attempts} of {limit} attempts.")
        lines.append(f"Error: {result.get('error', '')}")
    dropped = result.get("dropped_checks") or []
    if dropped:
        lines.append(
            "Model-written checks dropped as wrong (the program and a second prediction disagreed): "
            + "; ".join(f"`{c}`" for c in dropped)
        )
    printed = result.get("printed", "")
    if status in ("passed", "failed") and "code" in result:
        which = "It printed" if status == "passed" else f"Output of attempt {result.get('attempt', attempts)}"
        lines.append(f"{which}:\n{_block(printed)}" if printed.strip() else f"{which}: nothing.")
    if result.get("code"):
        kept = "" if status == "passed" else f"kept from attempt {result.get('attempt', attempts)}, "
        lines.append(_code(result, path, kept))
    others = [f for f in result.get("files", []) if f != path]
    if others:
        lines.append("Also written: " + ", ".join(others) + ".")
    return "\n".join(lines)
