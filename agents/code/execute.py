"""The Code Agent's run step: one sandbox run per attempt, the log analysed, doubtful checks judged.

When the program itself runs cleanly and only model-written checks fail, those checks are judged
(``agents.code.checks.judge``) before the code is blamed: checks found wrong are dropped, the checks
file gets a new version saying why, and the attempt counts by the checks that remain.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from typing import Any, cast

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from agents.code.checks import failed_checks, judge, render_checks
from agents.code.diagnosis import Diagnosis, diagnose
from agents.code.harness import CHECKS_MARKER, build_files
from agents.code.state import CodeState
from agents.context import Context
from agents.state import AttemptRecord, RunOutcome
from sandbox.base import EndReason
from sandbox.errors import SandboxError
from tools.execution import run_program, tail
from tools.run import index_output
from tools.services import get_sandbox, get_store

__all__ = ["MAX_JUDGED", "no_code_record", "run"]

logger = logging.getLogger(__name__)

MAX_JUDGED = 3
"""Failing model-written checks judged per run (each costs one short model call)."""


NO_OUTPUT = "the request asks the program to print something, but it printed nothing"
_ASKS_PRINT = re.compile(r"\b(print|prints|printed|display|show|output|tell me)\b", re.I)


def _silent(state: CodeState, stdout: str) -> bool:
    """A clean run that printed nothing although the user asked for printed output."""
    printed = stdout.split(CHECKS_MARKER, 1)[0]
    return not printed.strip() and bool(_ASKS_PRINT.search(state.request))


def no_code_record(state: CodeState, attempt: int) -> AttemptRecord:
    return AttemptRecord(
        attempt=attempt,
        passed=False,
        exit_code=-1,
        reason="no_code",
        error_class="NoCodeBlock",
        error_line=None,
        duration_s=0.0,
        checks_failed=0,
        checks_total=0,
        version_ids=[],
        summary=state.error,
        code=state.code,
        output="",
        printed="",
    )


async def _judge_checks(state: CodeState, ctx: Context, stdout: str) -> list[str]:
    """The failing model-written checks found wrong (empty when a user check or the program fails)."""
    failing = failed_checks(stdout.split(CHECKS_MARKER, 1)[-1])
    if not failing or len(failing) > MAX_JUDGED:
        return []
    if any(f.text.partition(" -> ")[0] not in state.model_checks for f in failing):
        return []  # a user's example (or an unreadable check) fails: the program must change
    wrong: list[str] = []
    for check in failing:
        verdict = await judge(ctx, state.request, check)
        # Unsettled: the user's passing examples speak for the program; without them the check stands.
        if verdict is False or (verdict is None and not state.user_checks):
            return []
        wrong.append(check.text.partition(" -> ")[0])
    return wrong


async def run(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Run the current version in the sandbox, analyse the log, emit the attempt as a custom event."""
    ctx = runtime.context
    attempt = state.attempts + 1
    version_ids = [state.files[p] for p in (state.code_path, state.tests_path) if p in state.files]
    update: dict[str, Any] = {}
    if state.error:
        record = no_code_record(state, attempt)
        diagnosis: Diagnosis | None = None
    else:
        if state.language == "python":
            files, entry = build_files(state.code_path, state.code, state.tests_path, state.tests)
        else:
            files, entry = {state.code_path: state.code}, state.code_path
        files.update({p: c for p, c in state.extra.items() if p not in files})
        try:
            sandbox = await get_sandbox(ctx)
            result, tier = await run_program(
                sandbox,
                files=files,
                entry=entry,
                language="typescript" if state.language == "typescript" else "python",
                library_set=ctx.library_set,
                tier=ctx.tier,  # type: ignore[arg-type]
            )
        except SandboxError as exc:
            logger.warning("sandbox refused attempt %d: %s", attempt, exc)
            return {
                "status": "error",
                "error": f"the sandbox could not run the code: {exc}",
                "attempts": attempt,
            }
        diagnosis = diagnose(result, {state.code_path: state.code}, state.language)
        if diagnosis.passed and _silent(state, result.stdout):
            diagnosis = Diagnosis(
                passed=False, error_class="NoOutput", message=NO_OUTPUT, checks_total=diagnosis.checks_total
            )
        clean = result.reason is EndReason.EXIT and "Traceback" not in result.stderr
        wrong = await _judge_checks(state, ctx, result.stdout) if clean and not diagnosis.passed else []
        if wrong:
            kept = [c for c in state.model_checks if c not in wrong]
            tests = render_checks(state.user_checks, kept)
            store = await get_store(ctx)
            note = (
                "checks rewritten: dropped "
                + "; ".join(wrong)
                + " (contradicted by the program and a second prediction)"
            )
            saved = await store.write(
                state.workspace_id or "",
                state.tests_path,
                tests or "# no checks\n",
                author="code_agent",
                message=note,
            )
            update.update(
                model_checks=kept,
                tests=tests,
                dropped_checks=[*state.dropped_checks, *wrong],
                files={saved.path: saved.id},
                versions=[*state.versions, saved.id],
            )
            version_ids = [version_ids[0], saved.id] if version_ids else [saved.id]
            diagnosis = Diagnosis(
                passed=True, checks_total=diagnosis.checks_total - len(wrong), checks_failed=0
            )
        output = result.stdout + ("\n" + result.stderr if result.stderr else "")
        await index_output(await get_store(ctx), state.workspace_id or "", state.code_path, output)
        record = AttemptRecord(
            attempt=attempt,
            passed=diagnosis.passed,
            exit_code=0 if wrong else result.exit_code,
            reason=result.reason.value,
            error_class=diagnosis.error_class,
            error_line=diagnosis.line,
            duration_s=round(result.duration_s, 3),
            checks_failed=diagnosis.checks_failed,
            checks_total=diagnosis.checks_total,
            version_ids=version_ids,
            tier=tier,
            summary=(f"{diagnosis.error_class}: {diagnosis.message}" if not diagnosis.passed else "passed"),
            code=state.code,
            output=tail(output, 4000),
            printed=tail(result.stdout.split(CHECKS_MARKER, 1)[0], 3000),
        )
    outcome = cast(RunOutcome, {k: v for k, v in record.items() if k not in ("code", "output", "printed")})
    get_stream_writer()({"type": "code_attempt", **outcome})
    status = "passed" if record["passed"] else ("exhausted" if attempt >= ctx.max_attempts else "working")
    return {
        **update,
        "attempts": attempt,
        "last_run": outcome,
        "history": [*state.history, record],
        "diagnosis": asdict(diagnosis) if diagnosis is not None and not diagnosis.passed else None,
        "status": status,
    }
