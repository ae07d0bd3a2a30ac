"""The Code Agent: write code, save it as versions, run it in the sandbox, repair from the log.

A subgraph ``prepare -> write_code -> save -> [approve] -> (run | serve) -> (write_code | report)``. It works
from the user's request verbatim (``agents.code.request``): a file the request names is the file it
writes, code pasted into the request is saved first as the user's version, and the user's examples
are the first checks (``agents.code.checks``). Each run is one sandbox call (``agents.code.execute``),
reported as a ``custom`` stream event. Repairs get the analysed failure and a cause sentence first;
sampling varies per retry. The report (``agents.code.report``) states the outcome as structured facts.
With ``require_approval`` each run waits for a human decision (``agents.code.approval``).
A request for a hosted web app (``agents.code.app_request``) takes the app path: the model writes
the page or app (``agents.code.app_prompts``), and ``serve`` (``agents.code.serve``) hosts it and
checks it in the sandboxed browser instead of running it; a failed check is repaired like a run.
"""

from __future__ import annotations

import ast
import logging
import re
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.chat import ask_model
from agents.code.app_prompts import app_draft_messages, app_repair_messages
from agents.code.app_request import AppKind, AppRequest, about_page, app_expectations, read_app_request
from agents.code.approval import approve
from agents.code.checks import render_checks, user_checks
from agents.code.diagnosis import Diagnosis
from agents.code.execute import run
from agents.code.prompts import draft_messages, repair_messages, sampling_for, tests_messages
from agents.code.report import report
from agents.code.request import Request, blocks_by_file, read_request
from agents.code.serve import serve
from agents.code.state import CodeOutput, CodeState
from agents.context import Context
from agents.parsing import extract_cause, pick_code
from tools.app_probe import AppExpectations
from tools.services import get_store
from workspace.errors import FileNotFoundInWorkspaceError, VersionNotFoundError

_MISSING = (FileNotFoundInWorkspaceError, VersionNotFoundError)

__all__ = ["MAX_RESAMPLES", "build_code_agent", "code_agent_graph"]

logger = logging.getLogger(__name__)

MAX_RESAMPLES = 2
"""Extra samples per attempt when a reply has no code or repeats tried code (not counted as attempts)."""


def _normalized(code: str) -> str:
    """Code without trailing spaces and blank-line noise, to recognise a reply that changed nothing."""
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


def _tests_path(code_path: str) -> str:
    head, _, base = code_path.rpartition("/")
    stem = base.rsplit(".", 1)[0]
    return f"{head}/test_{stem}.py" if head else f"test_{stem}.py"


def _defines_functions(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) for node in tree.body)


_PRINTS = re.compile(r"\b(print|prints|printed|display|show|output)\b", re.I)
_VALUES = re.compile(r"\b(return|returns|returning|function|method|def)\b", re.I)


def _asks_values(state: CodeState) -> bool:
    """Whether model-written checks of return values fit: not for a request that only asks to print."""
    return bool(_VALUES.search(state.request)) or not _PRINTS.search(state.request)


def _paths(state: CodeState, named: list[str], language: str) -> tuple[str, str, list[str]]:
    """The program, its checks file and any other files to write."""
    programs = [p for p in named if not p.split("/")[-1].startswith("test_")]
    tests = [p for p in named if p.split("/")[-1].startswith("test_") and p.endswith(".py")]
    if programs:
        code_path = programs[0]
    elif state.last_path and not named and not state.last_kind:  # a hosted app is changed by the app path
        code_path = state.last_path
    else:
        code_path = "main.ts" if language == "typescript" else "main.py"
    return code_path, (tests[0] if tests else _tests_path(code_path)), programs[1:]


def _app_of(state: CodeState, request: Request) -> AppRequest | None:
    """The app the request asks for; a follow-up of an app job ("make the button green") changes it."""
    found = read_app_request(request.text, request.files)
    if found is not None or state.last_kind not in ("static", "python") or not state.last_path:
        return found
    others = [p for p in request.files if p != state.last_path]
    if others or not about_page(request.text):  # "now write a function that ..." is a new program
        return None
    kind: AppKind = "static" if state.last_kind == "static" else "python"
    return AppRequest(kind, state.last_path, app_expectations(request.text))


def _app_fields(app: AppRequest | None) -> dict[str, Any]:
    if app is None:
        return {"app_kind": None, "app_expect": {}}
    expect = app.expectations
    fields = {"texts": expect.texts, "click_delta": expect.click_delta, "needs_button": expect.needs_button}
    return {"app_kind": app.kind, "app_expect": fields}


async def prepare(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Open the workspace, read the request, save pasted code as the user's version."""
    store = await get_store(runtime.context)
    workspace_id = state.workspace_id or (await store.create_workspace("agent workspace")).id
    request = read_request(state.messages, default_language=state.preferred_language or "python")
    app = _app_of(state, request)
    code_path, tests_path, extra_paths = _paths(state, request.files, request.language)
    language = "typescript" if code_path.endswith((".ts", ".mts")) else "python"
    if app is not None:  # a Python app serves an index.html written with it
        code_path, extra_paths = app.path, ([] if app.kind == "static" else ["index.html"])
        language = "html" if app.kind == "static" else "python"
    update: dict[str, Any] = {
        "workspace_id": workspace_id,
        "request": request.text or state.task,
        "earlier": request.earlier,
        "language": language,
        "code_path": code_path,
        "tests_path": tests_path,
        "extra_paths": extra_paths,
        "named_tests": tests_path in request.files and app is None,
        "pasted": False,
        "user_checks": user_checks(request.text) if language == "python" and app is None else [],
        "attempts": 0,
        "history": [],
        "versions": [],
        "code": "",
        "extra": {},
        "model_checks": [],
        "dropped_checks": [],
        "tests": "",
        "cause": "",
        "diagnosis": None,
        "status": "working",
        "error": "",
        "code_result": None,
        "app_check": "",
        "app_id": "",
        "app_link": "",
        "app_checked": [],
        **_app_fields(app),
    }
    if app is not None:
        return update  # code pasted into an app request is part of the request the model reads
    if request.pasted is not None and request.pasted.strip():
        try:
            current = (await store.read(workspace_id, code_path)).content
        except _MISSING:
            current = None
        if current is None or _normalized(current) != _normalized(request.pasted):
            saved = await store.write(
                workspace_id, code_path, request.pasted, author="user", message="pasted in the request"
            )
            update["files"] = {saved.path: saved.id}
            update["versions"] = [saved.id]
            logger.info("pasted code saved as the user's version of %s", code_path)
        update["pasted"] = True
    return update


async def _current(state: CodeState, ctx: Context) -> str | None:
    """The content the first draft changes: the pinned version, else the workspace's file, if any."""
    store = await get_store(ctx)
    try:
        pinned = state.files.get(state.code_path)
        return (await store.read(state.workspace_id or "", state.code_path, pinned)).content
    except _MISSING:
        return None


async def _read_latest(state: CodeState, ctx: Context, path: str) -> str | None:
    """The pinned (else latest) content of ``path`` in the workspace, if the file exists."""
    store = await get_store(ctx)
    try:
        return (await store.read(state.workspace_id or "", path, state.files.get(path))).content
    except _MISSING:
        return None


async def write_code(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask the model for a first draft or a patch, and for assert checks once (Python).

    A reply without code, or with code already tried (the current file or an earlier attempt), is
    resampled at once with a new seed and temperature, up to ``MAX_RESAMPLES`` times, without spending
    an attempt: running it again would only repeat a known failure.
    """
    ctx = runtime.context
    attempt = state.attempts + 1
    current: str | None = None
    expectations = AppExpectations(**state.app_expect).describe() if state.app_kind else []
    if attempt == 1:
        current = await _current(state, ctx)
    if state.app_kind and attempt == 1:
        existing = {state.code_path: current} if current else {}
        existing.update({p: c for p in state.extra_paths if (c := await _read_latest(state, ctx, p))})
        messages = app_draft_messages(
            state.app_kind,
            state.request,
            state.code_path,
            existing,
            expectations,
            also=state.extra_paths,
            note=state.task,
            earlier=state.earlier,
        )
    elif state.app_kind:
        files = {
            state.code_path: state.code,
            **{p: c for p, c in state.extra.items() if p in state.extra_paths},
        }
        messages = app_repair_messages(
            state.app_kind,
            state.request,
            files,
            state.diagnosis,
            expectations,
            note=state.error,
            earlier=state.earlier,
        )
    elif attempt == 1:
        messages = draft_messages(
            state.request,
            state.language,
            state.code_path,
            current,
            note=state.task,
            earlier=state.earlier,
            checks=state.user_checks,
            pasted=state.pasted,
            also=[*state.extra_paths, *([state.tests_path] if state.named_tests else [])],
        )
    else:
        diagnosis = Diagnosis(**state.diagnosis) if state.diagnosis else None
        messages = repair_messages(
            state.request,
            state.language,
            state.code_path,
            state.code,
            diagnosis,
            note=state.error,
            earlier=state.earlier,
        )
    seen = {_normalized(c) for c in (state.code, current, *(r.get("code") for r in state.history)) if c}
    reply, code = "", None
    for resample in range(MAX_RESAMPLES + 1):
        temperature, seed = sampling_for(attempt, resample)
        sample = await ask_model(ctx, messages, temperature=temperature, seed=seed)
        several = bool(state.extra_paths or state.named_tests)
        named = blocks_by_file(sample, [state.code_path]) if several else {}
        picked = named.get(state.code_path) or pick_code(sample, state.language)
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
    wanted = [*state.extra_paths, state.tests_path] if state.extra_paths or state.named_tests else []
    extra = {p: c for p, c in blocks_by_file(reply, wanted).items() if p != state.code_path}
    if state.app_kind == "python" and "index.html" in state.extra_paths and "index.html" not in extra:
        page = pick_code(reply, "html") if "```html" in reply.lower() else None  # an unnamed page block
        if page is not None:
            extra["index.html"] = page
    if extra:
        update["extra"] = {**state.extra, **extra}
    if state.language == "python" and not state.tests and not state.app_kind:
        if state.tests_path in extra:  # the user asked for a tests file: the model wrote it with the code
            update["tests"] = extra[state.tests_path]
        else:
            model_checks: list[str] = []
            if (
                ctx.generate_tests
                and not state.user_checks
                and _defines_functions(code)
                and _asks_values(state)
            ):
                tests_reply = await ask_model(ctx, tests_messages(state.request, code), stream=False)
                lines = (pick_code(tests_reply, "python") or "").splitlines()
                model_checks = [line for line in lines if line.startswith("assert ")]
            update["model_checks"] = model_checks
            update["tests"] = render_checks(state.user_checks, model_checks)
    return update


async def save(state: CodeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Store the new code (other files and the checks when they changed) as new versions."""
    if state.error:  # no code this time: nothing to save
        return {}
    store = await get_store(runtime.context)
    workspace_id = state.workspace_id or ""
    attempt = state.attempts + 1
    message = f"attempt {attempt}" + (f": {state.cause}" if state.cause else "")
    saved = await store.write(workspace_id, state.code_path, state.code, author="code_agent", message=message)
    files = {saved.path: saved.id}
    versions = [*state.versions, saved.id]
    others = {p: c for p, c in state.extra.items() if p != state.tests_path}
    if state.tests:
        others[state.tests_path] = state.tests
    for path, content in others.items():
        try:
            unchanged = (await store.read(workspace_id, path)).content == content
        except _MISSING:
            unchanged = False
        if not unchanged:
            what = "checks" if path == state.tests_path else f"attempt {attempt}"
            written = await store.write(workspace_id, path, content, author="code_agent", message=what)
            files[written.path] = written.id
            versions.append(written.id)
    return {"files": files, "versions": versions}


def after_save(state: CodeState, runtime: Runtime[Context]) -> Literal["approve", "run", "serve"]:
    """Ask a human first when the context requires approval (and there is code to run)."""
    if runtime.context.require_approval and not state.error:
        return "approve"
    return "serve" if state.app_kind else "run"


def after_approve(state: CodeState) -> Literal["run", "serve", "report"]:
    """Run (or host an app) unless the human rejected the code."""
    if state.status == "rejected":
        return "report"
    return "serve" if state.app_kind else "run"


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
    builder.add_node("serve", serve)
    builder.add_node("report", report)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "write_code")
    builder.add_edge("write_code", "save")
    builder.add_conditional_edges("save", after_save)
    builder.add_conditional_edges("approve", after_approve)
    builder.add_conditional_edges("run", after_run)
    builder.add_conditional_edges("serve", after_run)
    builder.add_edge("report", END)
    return builder


code_agent_graph = build_code_agent().compile(name="code_agent")
