"""The Code Agent's app step: host this attempt's app, try it in the sandboxed browser, judge it.

It stands where ``run`` stands for a program, and a failure feeds the same repair loop: one attempt
of the same budget, a ``custom`` event, an attempt record the best-attempt rule ranks, and the facts
(what failed, console errors, what each click did, the page's text, the end of the app's log) in
place of a traceback. A failed app is removed at once (the tenant's app count stays free for the
next attempt); the app that passed keeps running and its signed link goes to the reply.

Attempts rank by how far they got (``checks_failed`` counts the stages missed): it started and
loaded, no JavaScript error, the user's expectations, every button does something. A Python app
that logged an exception while serving (a traceback in its output) fails even when the page looked
right: its page may be an empty answer cut short by the error.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, cast

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from agents.code.execute import no_code_record
from agents.code.state import CodeState
from agents.context import Context
from agents.state import AttemptRecord, RunOutcome
from tools.app_probe import AppCheck, AppExpectations, probe_app
from tools.apps import HOSTING_UNAVAILABLE, AppHost, AppHostingError, get_apps
from tools.execution import tail

__all__ = ["STAGES", "serve"]

logger = logging.getLogger(__name__)

STAGES = 4
"""Stages of an app check: started and loaded, no JS error, expectations met, every button works."""
_MISSED = {
    "AppStartError": 4,
    "LoadError": 4,
    "JSError": 3,
    "ExpectationFailed": 2,
    "ClickError": 2,
    "AppExited": 2,
    "AppError": 2,
    "NoEffect": 1,
}
_PY_ERROR = re.compile(r"^(\w+(?:Error|Exception))\b:?\s*(.*)$", re.M)
_TRACEBACK = "Traceback (most recent call last)"
_HARMLESS = ("BrokenPipeError", "ConnectionResetError", "ConnectionAbortedError")  # the browser left early


def _start_failure(exc: AppHostingError) -> dict[str, Any]:
    """An app that did not start: the message, and the error class its log names (Python)."""
    found = _PY_ERROR.findall(exc.log)
    message = str(exc) + (f" ({found[-1][0]}: {found[-1][1]})" if found else "")
    return {"problem": "AppStartError", "message": message.strip(), "log_tail": tail(exc.log, 2000)}


def _raised(log_tail: str) -> str | None:
    """The last exception the app's program logged while serving (Python apps), if any."""
    if _TRACEBACK not in log_tail:
        return None
    last = log_tail[log_tail.rindex(_TRACEBACK) :]
    found = _PY_ERROR.findall(last)
    if not found or found[-1][0] in _HARMLESS:
        return None
    return f"{found[-1][0]}: {found[-1][1]}".strip(": ")


def _check_failure(check: AppCheck, log_tail: str, exited: bool, kind: str) -> dict[str, Any] | None:
    """The facts of a failed check (None when the app passed, kept running and raised nothing).

    An exception the app logged names the cause better than what the browser saw (a blank page), so
    it comes first.
    """
    facts: dict[str, Any] = {
        "steps": list(check.steps),
        "page_text": check.page_text,
        "console_errors": list(check.console_errors),
        "log_tail": log_tail if kind == "python" or exited else "",  # a static site's log is its requests
    }
    raised = _raised(log_tail) if kind == "python" else None
    if raised:
        seen = "" if check.passed else f" (the browser saw: {check.problem}: {check.message})"
        return {**facts, "problem": "AppError", "message": f"the app raised {raised} while serving{seen}"}
    if not check.passed:
        return {**facts, "problem": check.problem, "message": check.message}
    if exited:
        message = "the app's process ended by itself during the check (it was started again on request)"
        return {**facts, "problem": "AppExited", "message": message}
    return None


async def _host_and_check(
    state: CodeState, ctx: Context, apps: AppHost
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Host and probe; (failure facts or None, state update for an app that is kept)."""
    versions = {p: state.files[p] for p in (state.code_path, *state.extra) if p in state.files}
    try:
        app = await apps.host(state.workspace_id or "", entry=state.code_path, versions=versions)
    except AppHostingError as exc:
        if not exc.fixable:  # a limit or a refusal: no repair of the code changes that
            return None, {
                "app_check": "not_hosted",
                "status": "error",
                "error": f"the app was not hosted: {exc}",
            }
        return _start_failure(exc), {}
    kept = {
        "app_id": app.id,
        "app_link": app.link,
        "app_link_expires_at": app.link_expires_at,
        "app_expires_at": app.expires_at,
    }
    try:
        check = await probe_app(ctx, app.id, AppExpectations(**state.app_expect))
    except Exception as exc:  # the browser itself could not run: the app runs, unchecked
        logger.warning("app %s hosted but not checked: %s", app.id, exc)
        reason = f"the browser check could not run: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        return None, {**kept, "app_check": "unchecked", "status": "error", "error": reason}
    try:
        status = await apps.status(app.id)
        log_tail, ended = status.log_tail, status.exits > 0 or not status.running
    except AppHostingError:  # removed meanwhile (expired, deleted): it does not run
        log_tail, ended = "", True
    facts = _check_failure(check, log_tail, ended, state.app_kind or "static")
    if facts is not None:
        await apps.remove(app.id)
        logger.info("attempt's app %s failed its check (%s); removed", app.id, facts["problem"])
        return facts, {}
    return None, {**kept, "app_check": "passed", "app_checked": list(check.steps)}


def _record(state: CodeState, attempt: int, facts: dict[str, Any] | None, took: float) -> AttemptRecord:
    passed = facts is None
    problem = None if facts is None else str(facts.get("problem"))
    summary = "passed" if facts is None else f"{problem}: {facts.get('message', '')}"
    shown = "" if facts is None else "\n".join([summary, *facts.get("console_errors", [])])
    return AttemptRecord(
        attempt=attempt,
        passed=passed,
        exit_code=0 if passed else 1,
        reason="check",
        error_class=problem,
        error_line=None,
        duration_s=round(took, 3),
        checks_failed=0 if problem is None else _MISSED.get(problem, STAGES),
        checks_total=STAGES,
        version_ids=[state.files[p] for p in (state.code_path, *state.extra) if p in state.files],
        tier="light",
        summary=summary,
        code=state.code,
        output=tail(shown, 4000),
        printed="",
    )


async def serve(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Host the current version as an app, check it in the browser, emit the attempt's event."""
    ctx = runtime.context
    attempt = state.attempts + 1
    apps = get_apps(ctx)
    if apps is None:
        logger.info("app requested but this run has no app manager")
        return {
            "status": "error",
            "error": HOSTING_UNAVAILABLE,
            "attempts": attempt,
            "app_check": "not_hosted",
        }
    started = time.monotonic()
    update: dict[str, Any] = {}
    facts: dict[str, Any] | None
    if state.error:  # the model's reply had no code: nothing to host
        record, facts = no_code_record(state, attempt), {"problem": "NoCodeBlock", "message": state.error}
    else:
        facts, update = await _host_and_check(state, ctx, apps)
        if update.get("status") == "error":  # not hosted for a reason no repair changes, or unchecked
            return {**update, "attempts": attempt}
        record = _record(state, attempt, facts, time.monotonic() - started)
    outcome = cast(RunOutcome, {k: v for k, v in record.items() if k not in ("code", "output", "printed")})
    if update.get("app_id"):
        outcome["app_id"] = update["app_id"]
    outcome["check"] = "passed" if record["passed"] else "failed"
    get_stream_writer()({"type": "code_attempt", **outcome})
    status = "passed" if record["passed"] else ("exhausted" if attempt >= ctx.max_attempts else "working")
    return {
        **update,
        "attempts": attempt,
        "last_run": outcome,
        "history": [*state.history, record],
        "diagnosis": facts,
        "status": status,
        "app_check": "passed" if record["passed"] else "failed",
    }
