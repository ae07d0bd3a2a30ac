"""The Code Agent: write code, save it as versions, run it in the sandbox, repair from the log.

A subgraph ``prepare -> write_code -> save -> [approve] -> run -> (write_code | report)``. Each run
is one sandbox call (program + assert checks, see ``agents.harness``), is reported as a ``custom``
stream event, and updates ``last_run``. Repairs get the analysed failure, a one-sentence cause is
asked before the patch, and sampling varies per retry. The best attempt (passing, else fewest
failed checks) is the result. With ``require_approval`` each run waits for a human decision
(``interrupt``; resume with ``Command(resume={"action": "approve" | "edit" | "reject", ...})``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, cast

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph, add_messages
from langgraph.runtime import Runtime

from agents.approval import approve
from agents.chat import ask_model
from agents.code_messages import draft_messages, repair_messages, sampling_for, tests_messages
from agents.code_report import best_attempt, report_text
from agents.context import Context
from agents.diagnose import Diagnosis, diagnose
from agents.harness import build_files
from agents.parsing import extract_cause, pick_code
from agents.state import AttemptRecord, RunOutcome, merge_files
from sandbox.errors import SandboxError
from tools.execution import run_program, tail
from tools.run import index_output
from tools.services import get_sandbox, get_store

__all__ = ["CodeOutput", "CodeState", "build_code_agent", "code_agent_graph"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class CodeOutput:
    """What the Code Agent hands back to the parent graph."""

    messages: Annotated[Sequence[AnyMessage], add_messages] = field(default_factory=list)
    workspace_id: str | None = None
    files: Annotated[dict[str, str], merge_files] = field(default_factory=dict)
    attempts: int = 0
    last_run: RunOutcome | None = None


@dataclass(kw_only=True)
class CodeState(CodeOutput):
    """The Code Agent's working state (private fields stay inside the subgraph)."""

    task: str = ""
    language: Literal["python", "typescript"] = "python"
    code_path: str = "main.py"
    tests_path: str = "test_main.py"
    code: str = ""
    tests: str = ""
    cause: str = ""
    diagnosis: dict[str, Any] | None = None
    history: list[AttemptRecord] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    status: Literal["working", "passed", "exhausted", "rejected", "error"] = "working"
    error: str = ""


_TS_WORDS = ("typescript", " ts ", ".ts", "deno")
MAX_RESAMPLES = 2
"""Extra samples per attempt when a reply has no code or repeats tried code (not counted as attempts)."""


def _normalized(code: str) -> str:
    """Code without trailing spaces and blank-line noise, to recognise a reply that changed nothing."""
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def _task_of(state: CodeState) -> str:
    if state.task:
        return state.task
    human = [m for m in state.messages if isinstance(m, HumanMessage)]
    return str(human[-1].content) if human else ""


async def prepare(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Open (or create) the workspace, pick the language, reset the attempt counter."""
    store = await get_store(runtime.context)
    workspace_id = state.workspace_id or (await store.create_workspace("agent workspace")).id
    task = _task_of(state)
    lowered = f" {task.lower()} "
    language: Literal["python", "typescript"] = (
        "typescript" if any(w in lowered for w in _TS_WORDS) else "python"
    )
    code_path = "main.ts" if language == "typescript" else "main.py"
    return {
        "workspace_id": workspace_id,
        "task": task,
        "language": language,
        "code_path": code_path,
        "attempts": 0,
        "history": [],
        "versions": [],
        "code": "",
        "tests": "",
        "cause": "",
        "diagnosis": None,
        "status": "working",
        "error": "",
    }


async def write_code(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask the model for a first draft or a patch, and for assert checks once (Python).

    A reply without code, or with code already tried (the current file or an earlier attempt), is
    resampled at once with a new seed and temperature, up to ``MAX_RESAMPLES`` times, without spending
    an attempt: running it again would only repeat a known failure.
    """
    ctx = runtime.context
    attempt = state.attempts + 1
    current: str | None = None
    if attempt == 1:
        if state.code_path in state.files:
            store = await get_store(ctx)
            pinned = state.files[state.code_path]
            current = (await store.read(state.workspace_id or "", state.code_path, pinned)).content
        messages = draft_messages(state.task, state.language, state.code_path, current)
    else:
        diagnosis = Diagnosis(**state.diagnosis) if state.diagnosis else None
        messages = repair_messages(
            state.task, state.language, state.code_path, state.code, diagnosis, note=state.error
        )
    seen = {_normalized(c) for c in (state.code, current, *(r.get("code") for r in state.history)) if c}
    reply, code = "", None
    for resample in range(MAX_RESAMPLES + 1):
        temperature, seed = sampling_for(attempt, resample)
        sample = await ask_model(ctx, messages, temperature=temperature, seed=seed)
        picked = pick_code(sample, state.language)
        if picked is not None or code is None:
            reply, code = sample, picked
        if code is not None and _normalized(code) not in seen:
            break
        if resample < MAX_RESAMPLES:
            why = "had no code block" if picked is None else "repeated code already tried"
            logger.info("attempt %d sample %d %s: resampling", attempt, resample + 1, why)
    update: dict[str, Any] = {"cause": extract_cause(reply) or ""}
    if code is None:
        logger.info("attempt %d: the model's reply had no code block", attempt)
        update["error"] = (
            "Your reply contained no code block. Reply with the whole program in one code block."
        )
        update["code"] = state.code
        return update
    update["code"], update["error"] = code, ""
    if state.language == "python" and ctx.generate_tests and not state.tests:
        tests_reply = await ask_model(ctx, tests_messages(state.task, code), temperature=0.0)
        tests = pick_code(tests_reply, "python") or ""
        update["tests"] = tests if "assert" in tests else ""
    return update


async def save(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Store the new code (and the checks, the first time) as new versions."""
    if state.error:  # no code this time: nothing to save
        return {}
    store = await get_store(runtime.context)
    workspace_id = state.workspace_id or ""
    attempt = state.attempts + 1
    message = f"attempt {attempt}" + (f": {state.cause}" if state.cause else "")
    saved = await store.write(workspace_id, state.code_path, state.code, author="code_agent", message=message)
    files = {saved.path: saved.id}
    versions = [*state.versions, saved.id]
    if state.tests and state.tests_path not in state.files:
        checks = await store.write(
            workspace_id, state.tests_path, state.tests, author="code_agent", message="assert checks"
        )
        files[checks.path] = checks.id
        versions.append(checks.id)
    return {"files": files, "versions": versions}


async def run(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Run the current version in the sandbox, analyse the log, emit the attempt as a custom event."""
    ctx = runtime.context
    attempt = state.attempts + 1
    version_ids = [v for p, v in state.files.items() if p in (state.code_path, state.tests_path)]
    record: AttemptRecord
    diagnosis: Diagnosis | None = None
    if state.error:
        record = AttemptRecord(
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
        )
    else:
        if state.language == "python":
            files, entry = build_files(state.code_path, state.code, state.tests_path, state.tests)
        else:
            files, entry = {state.code_path: state.code}, state.code_path
        try:
            sandbox = await get_sandbox(ctx)
            result, tier = await run_program(
                sandbox,
                files=files,
                entry=entry,
                language=state.language,
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
        output = result.stdout + ("\n" + result.stderr if result.stderr else "")
        await index_output(await get_store(ctx), state.workspace_id or "", state.code_path, output)
        record = AttemptRecord(
            attempt=attempt,
            passed=diagnosis.passed,
            exit_code=result.exit_code,
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
        )
    outcome = cast(RunOutcome, {k: v for k, v in record.items() if k not in ("code", "output")})
    get_stream_writer()({"type": "code_attempt", **outcome})
    status = "passed" if record["passed"] else ("exhausted" if attempt >= ctx.max_attempts else "working")
    return {
        "attempts": attempt,
        "last_run": outcome,
        "history": [*state.history, record],
        "diagnosis": asdict(diagnosis) if diagnosis is not None and not diagnosis.passed else None,
        "status": status,
    }


async def report(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pick the best attempt, make it the current version, and report to the conversation."""
    update: dict[str, Any] = {}
    best = best_attempt(state.history)
    last_ids = state.history[-1].get("version_ids", []) if state.history else []
    if best is not None and best.get("version_ids") and best.get("version_ids") != last_ids:
        store = await get_store(runtime.context)
        code_version = best["version_ids"][0]
        restored = await store.rollback(
            state.workspace_id or "", state.code_path, code_version, author="code_agent"
        )
        update["files"] = {restored.path: restored.id}
        update["versions"] = [*state.versions, restored.id]
    text = report_text(state, best, restored_id=update.get("files", {}).get(state.code_path))
    update["messages"] = [AIMessage(content=text, name="code_agent")]
    return update


def after_save(state: CodeState, runtime: Runtime[Context]) -> Literal["approve", "run"]:
    """Ask a human first when the context requires approval (and there is code to run)."""
    return "approve" if runtime.context.require_approval and not state.error else "run"


def after_approve(state: CodeState) -> Literal["run", "report"]:
    """Run unless the human rejected the code."""
    return "report" if state.status == "rejected" else "run"


def after_run(state: CodeState) -> Literal["write_code", "report"]:
    """Retry while attempts remain and nothing decisive happened."""
    return "write_code" if state.status == "working" else "report"


def build_code_agent() -> StateGraph[CodeState, Context, CodeState, CodeOutput]:
    """The Code Agent's graph builder (compiled by the caller, checkpointer inherited)."""
    builder = StateGraph(CodeState, context_schema=Context, input_schema=CodeState, output_schema=CodeOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("write_code", write_code)
    builder.add_node("save", save)
    builder.add_node("approve", approve)
    builder.add_node("run", run)
    builder.add_node("report", report)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "write_code")
    builder.add_edge("write_code", "save")
    builder.add_conditional_edges("save", after_save)
    builder.add_conditional_edges("approve", after_approve)
    builder.add_conditional_edges("run", after_run)
    builder.add_edge("report", END)
    return builder


code_agent_graph = build_code_agent().compile(name="code_agent")
