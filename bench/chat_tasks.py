"""Small chat tasks end to end, graded by hidden checks: the HTTP path vs the Code Agent vs the model.

Each task (``bench/chat_tasks_cases.py``: implement from a docstring, fix a pasted bug, compute and
report a number, write a named file) is solved three ways, with the embedded model:

- ``http``: sent as a client would, through the server's Agent Protocol with ``langgraph-sdk``
  (streaming ``values`` / ``messages-tuple`` / ``custom``) against a real server process, in a fresh
  workspace; graded from the workspace's files (REST ``/v1/workspaces/{id}/files``) and the reply;
- ``agent``: the Code Agent subgraph alone, in process, with the same request;
- ``model``: the model alone, one shot, with the Code Agent's first-draft prompt.

Grading runs the file in the local sandbox with the task's hidden checks (never shown to the model).
A "success claim on failing code" is a reply that reports success while the file, run alone, fails.
Prints one line per task and mode, then solve rates, mean time per task and the claims count, last.

Usage: python bench/chat_tasks.py [--limit N] [--mode http,agent,model] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from chat_tasks_cases import TASKS, ChatTask  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402

from sandbox.base import Sandbox  # noqa: E402
from sandbox.config import SandboxSettings  # noqa: E402
from sandbox.registry import create_sandbox  # noqa: E402
from tools.execution import run_program  # noqa: E402

MARK = "HIDDEN-CHECKS-OK"
MODES = ["values", "messages-tuple", "custom"]
_SUCCESS = re.compile(r"\b(passed|works|working|done|success(ful(ly)?)?|correct(ly)?|fixed)\b", re.I)
_FAILURE = re.compile(r"\b(fail(ed|s|ure)?|error|could not|did not)\b", re.I)


@dataclass
class Outcome:
    """One task solved one way."""

    files: dict[str, str]
    reply: str
    seconds: float
    error: str = ""


@dataclass
class Grade:
    """The verdict on one outcome."""

    solved: bool
    runs_clean: bool
    claims_success: bool
    note: str = ""


def _language(path: str) -> str:
    return "typescript" if path.endswith((".ts", ".mts")) else "python"


def target_file(task: ChatTask, files: dict[str, str]) -> str | None:
    """The file to grade: the named one (it must exist under that name), else the main program."""
    if task.path:
        return task.path if task.path in files else None
    programs = [p for p in files if p.endswith((".py", ".ts")) and not p.split("/")[-1].startswith("test_")]
    programs = [p for p in programs if not p.startswith("_")]
    for preferred in ("main.py", "main.ts"):
        if preferred in programs:
            return preferred
    return programs[-1] if programs else None


def claims_success(reply: str) -> bool:
    """True when the reply reports success and says nothing of a failure."""
    return bool(_SUCCESS.search(reply)) and not _FAILURE.search(reply)


async def grade(sandbox: Sandbox, task: ChatTask, outcome: Outcome, *, reply_counts: bool) -> Grade:
    """Run the hidden checks on the outcome's file; for ``tell`` tasks the reply must quote the number."""
    path = target_file(task, outcome.files)
    claim = reply_counts and claims_success(outcome.reply)
    if path is None:
        return Grade(False, False, claim, "no file" + (f" named {task.path}" if task.path else ""))
    code, language = outcome.files[path], _language(path)
    alone, _ = await run_program(sandbox, files={path: code}, entry=path, language=language)  # type: ignore[arg-type]
    runs_clean = alone.exit_code == 0
    if task.kind == "function":
        program = f"{code.rstrip()}\n\n{task.checks}print({MARK!r})\n"
        result, _ = await run_program(sandbox, files={path: program}, entry=path, language="python")
        solved = MARK in result.stdout
        note = "" if solved else (result.stderr.strip().splitlines() or ["checks failed"])[-1][:120]
    else:
        printed = "\n".join(line.rstrip() for line in alone.stdout.strip().splitlines())
        solved = runs_clean and task.expect in printed
        note = "" if solved else f"printed {printed[-60:]!r}"
        if solved and task.tell and reply_counts and task.expect not in outcome.reply:
            solved, note = False, "the reply does not quote the number"
    return Grade(solved, runs_clean, claim, note)


# -- the three ways ---------------------------------------------------------------------------------


async def solve_http(task: ChatTask, server: Any, client: Any, http: httpx.AsyncClient) -> Outcome:
    """Send the task as a client would; read the reply from the stream and the files over REST."""
    started = time.monotonic()
    ws = (await http.post("/v1/workspaces", json={"name": f"chat-{task.name}"})).json()["id"]
    thread = await client.threads.create()
    values: dict[str, Any] = {}
    error = ""
    async for part in client.runs.stream(
        thread["thread_id"],
        "agent",
        input={"messages": [{"role": "user", "content": task.prompt}], "workspace_id": ws},
        stream_mode=MODES,
    ):
        if part.event == "values" and isinstance(part.data, dict):
            values = part.data
        elif part.event == "error":
            error = str(part.data)[:200]
    messages = values.get("messages") or []
    reply = str(messages[-1].get("content", "")) if messages else ""
    files: dict[str, str] = {}
    for info in (await http.get(f"/v1/workspaces/{ws}/files")).json():
        got = await http.get(f"/v1/workspaces/{ws}/files/{info['path']}")
        files[info["path"]] = got.json()["content"]
    return Outcome(files, reply, time.monotonic() - started, error)


async def solve_agent(task: ChatTask, store: Any, context: Any) -> Outcome:
    """The Code Agent subgraph alone on the same request."""
    try:
        from agents.code.graph import code_agent_graph
    except ImportError:  # the layout before issue 9
        from agents.code_agent import code_agent_graph  # type: ignore[no-redef]
    started = time.monotonic()
    ws = (await store.create_workspace(f"chat-{task.name}")).id
    final: dict[str, Any] = {}
    async for chunk in code_agent_graph.astream(
        {"messages": [HumanMessage(task.prompt)], "workspace_id": ws}, context=context, stream_mode="values"
    ):
        final = chunk
    files = {f.path: (await store.read(ws, f.path)).content for f in await store.list_files(ws)}
    reply = str(final["messages"][-1].content) if final.get("messages") else ""
    return Outcome(files, reply, time.monotonic() - started)


async def solve_model(task: ChatTask, context: Any) -> Outcome:
    """One shot: the Code Agent's first-draft prompt, the code block of the reply as the file."""
    from agents.chat import ask_model
    from agents.parsing import pick_code

    try:
        from agents.code.prompts import draft_messages
    except ImportError:  # the layout before issue 9
        from agents.code_messages import draft_messages  # type: ignore[no-redef]
    path = task.path or "main.py"
    language = _language(path)
    started = time.monotonic()
    reply = await ask_model(context, draft_messages(task.prompt, language, path, None))
    code = pick_code(reply, language)
    return Outcome({path: code} if code else {}, reply, time.monotonic() - started)


# -- the run ----------------------------------------------------------------------------------------


def _clean_model_env() -> None:
    """Without an endpoint in the environment, the server and the agents use the embedded model."""
    for key in list(os.environ):
        if key.startswith(("OPENAI_", "AGENTIC_OPENAI_")) or key == "AGENTIC_MODEL":
            del os.environ[key]


async def run_mode(
    mode: str, tasks: list[ChatTask], sandbox: Sandbox, tmp: Path
) -> list[tuple[ChatTask, Outcome]]:
    """Solve every task one way, printing a line per task as it ends."""
    results: list[tuple[ChatTask, Outcome]] = []

    async def record(task: ChatTask, outcome: Outcome) -> None:
        # One rule for every mode: a "tell me the number" task is solved only when the reply quotes it
        # (the user reads the reply; a model that never ran its code must not be credited with its output).
        g = await grade(sandbox, task, outcome, reply_counts=True)
        results.append((task, outcome))
        verdict = "SOLVED" if g.solved else "failed"
        lie = "  CLAIMS SUCCESS ON FAILING CODE" if g.claims_success and not g.runs_clean else ""
        print(f"{mode:5s} {task.name:18s} {verdict:6s} {outcome.seconds:6.1f}s {g.note}{lie}", flush=True)

    if mode == "http":
        from langgraph_sdk.client import LangGraphClient

        from tests.server.agent_protocol.support import ServerProcess

        env = {"AGENTIC_RATE_LIMIT_PER_MINUTE": "0", "AGENTIC_SANDBOX_BACKEND": "local"}
        with ServerProcess(tmp / "server", env) as server:
            timeout = httpx.Timeout(connect=30, read=1800, write=60, pool=60)
            async with httpx.AsyncClient(
                base_url=server.url, headers=server.headers, timeout=timeout
            ) as http:
                client = LangGraphClient(http)
                for task in tasks:
                    try:
                        outcome = await solve_http(task, server, client, http)
                    except Exception as exc:  # a bench counts failures instead of stopping
                        outcome = Outcome({}, "", 0.0, f"{type(exc).__name__}: {exc}")
                    await record(task, outcome)
        return results
    from agents.context import Context
    from workspace.sql import SqlVersionStore

    context = Context(model_base_url=None, model_api_key=None, model_name=None, sandbox=sandbox)
    async with SqlVersionStore.from_url(f"sqlite+aiosqlite:///{tmp / mode}.db") as store:
        await store.setup()
        context.store = store
        for task in tasks:
            if mode == "agent":
                outcome = await solve_agent(task, store, context)
            else:
                outcome = await solve_model(task, context)
            await record(task, outcome)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N tasks (spread over the kinds)")
    parser.add_argument("--mode", default="model,agent,http", help="comma-separated: model, agent, http")
    parser.add_argument("--only", nargs="*", default=[], help="task names")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _clean_model_env()
    tasks = [t for t in TASKS if not args.only or t.name in args.only]
    if args.limit:  # round-robin over the four groups so a slice has every kind
        groups = [tasks[0:12], tasks[12:22], tasks[22:32], tasks[32:]]
        spread = [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)]
        tasks = spread[: args.limit]
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    summary: dict[str, tuple[int, float, int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="agentic-chat-") as tmp:
        async with create_sandbox(SandboxSettings(), "local") as sandbox:
            for mode in modes:
                results = await run_mode(mode, tasks, sandbox, Path(tmp))
                grades = [await grade(sandbox, t, o, reply_counts=True) for t, o in results]
                solved = sum(g.solved for g in grades)
                lies = sum(g.claims_success and not g.runs_clean for g in grades)
                wrong_claims = sum(g.claims_success and not g.solved for g in grades)
                mean = sum(o.seconds for _, o in results) / max(len(results), 1)
                summary[mode] = (solved, mean, lies, wrong_claims)
    n = len(tasks)
    print()
    for mode, (solved, mean, lies, wrong) in summary.items():
        extra = (
            f", success claims on failing code {lies}, on code failing hidden checks {wrong}"
            if mode == "http"
            else ""
        )
        print(f"{mode:5s} solved {solved:3d}/{n} = {100 * solved / n:5.1f}%  mean {mean:6.1f} s/task{extra}")
    rates = "  ".join(f"{m} {100 * s / n:.1f}%" for m, (s, _, _, _) in summary.items())
    lies_total = summary.get("http", (0, 0.0, 0, 0))[2]
    print(f"chat tasks (n={n}): solve rate {rates}; success claims on failing code: {lies_total}")


if __name__ == "__main__":
    asyncio.run(main())
