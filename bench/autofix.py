"""How often the Code Agent repairs a small buggy program with the embedded model.

Each case (``bench/autofix_cases.py``) is a program whose visible assert fails. The Code Agent gets it as
the current ``main.py`` with "fix it" and ``max_attempts=3``; a repair counts only if the result also
passes held-out checks the model never saw (run in the local sandbox). Attempt 1 (greedy, plus up to two
resamples when the reply has no code or leaves the file unchanged) does not depend on ``max_attempts``, so
one run gives both rates: fixed at attempt 1 (= ``max_attempts=1``) and fixed within 3 attempts. Each line
also shows how many extra samples (``resamples``, not counted as attempts) the agent drew.

The baseline, measured in the same run with ``--baseline``: the naive repair loop (the same first
prompt, then resend the error log with "fix it", same prompt, temperature 0).

Usage: python bench/autofix.py [--cases N] [--baseline] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autofix_cases import CASES, Case  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage  # noqa: E402

from agents.chat import text_of  # noqa: E402
from agents.code.graph import code_agent_graph  # noqa: E402
from agents.code.prompts import draft_messages  # noqa: E402
from agents.context import Context  # noqa: E402
from agents.models import chat_model  # noqa: E402
from agents.parsing import pick_code  # noqa: E402
from agents.runtime.embedded import get_embedded_server  # noqa: E402
from sandbox.base import Sandbox  # noqa: E402
from sandbox.config import SandboxSettings  # noqa: E402
from sandbox.registry import create_sandbox  # noqa: E402
from tools.execution import run_program, tail  # noqa: E402
from workspace.sql import SqlVersionStore  # noqa: E402

MARK = "HELD-OUT OK"


class ResampleCounter(logging.Handler):
    """Counts the Code Agent's resamples from its log (they are not attempts, so no event reports them)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "resampling" in record.getMessage():
            self.count += 1


def task_of(case: Case) -> str:
    """The request the agent gets (the goal, but not the held-out checks)."""
    return (
        f"main.py fails when run. Fix the bug. What it should do: {case.goal} "
        "Keep the assert check at the end of the file."
    )


async def verify(sandbox: Sandbox, code: str | None, case: Case) -> bool:
    """Run the code plus the held-out checks; True when everything passes."""
    if not code:
        return False
    program = f"{code.rstrip()}\n\n{case.held_out}print({MARK!r})\n"
    result, _ = await run_program(sandbox, files={"main.py": program}, entry="main.py", language="python")
    return result.exit_code == 0 and MARK in result.stdout


async def run_agent(case: Case, store: SqlVersionStore, sandbox: Sandbox, attempts: int) -> dict[str, Any]:
    """Let the Code Agent repair one case; return per-attempt verification."""
    workspace = await store.create_workspace(f"autofix-{case.name}")
    version = await store.write(workspace.id, "main.py", case.code, author="bench", message="buggy")
    ctx = Context(
        model_base_url=None,
        model_api_key=None,
        model_name=None,
        max_attempts=attempts,
        require_approval=False,
        generate_tests=False,
        store=store,
        sandbox=sandbox,
    )
    events: list[dict[str, Any]] = []
    inputs = {
        "messages": [HumanMessage(task_of(case))],
        "task": task_of(case),
        "workspace_id": workspace.id,
        "files": {"main.py": version.id},
    }
    async for mode, chunk in code_agent_graph.astream(inputs, context=ctx, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
    history = await store.history(workspace.id, "main.py")
    by_attempt = {
        int(v.message.split()[1].rstrip(":")): v.content for v in history if v.message.startswith("attempt ")
    }
    final = history[-1].content if len(history) > 1 else None
    return {
        "at1": await verify(sandbox, by_attempt.get(1), case),
        "final": await verify(sandbox, final, case),
        "attempts": len(events),
        "errors": [e.get("error_class") for e in events],
    }


async def run_naive(case: Case, sandbox: Sandbox, attempts: int) -> dict[str, Any]:
    """The naive loop: same first prompt, then resend the error log and ask again at temperature 0."""
    model = chat_model(base_url=None, api_key=None, model=None, temperature=0.0)
    messages: list[BaseMessage] = draft_messages(task_of(case), "python", "main.py", case.code)
    first: bool | None = None
    for attempt in range(1, attempts + 1):
        reply = text_of(await model.ainvoke(messages))
        code = pick_code(reply, "python")
        ok = False
        log = "Your reply contained no code block."
        if code:
            result, _ = await run_program(
                sandbox, files={"main.py": code}, entry="main.py", language="python"
            )
            ok = result.exit_code == 0
            log = tail(result.stdout + "\n" + result.stderr, 2000)
        ok = ok and await verify(sandbox, code, case)
        if first is None:
            first = ok
        if ok:
            return {"at1": first, "final": True, "attempts": attempt}
        messages = [*messages, AIMessage(reply), HumanMessage(f"It failed:\n{log}\nFix it.")]
    return {"at1": bool(first), "final": False, "attempts": attempts}


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100.0 * hits / total:.0f}%)" if total else "0/0"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=len(CASES))
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="also run the naive repair loop")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    counter = ResampleCounter()
    agent_logger = logging.getLogger("agents.code.graph")
    agent_logger.setLevel(logging.INFO)
    agent_logger.addHandler(counter)
    agent_logger.propagate = False
    cases = [c for c in CASES if not args.only or c.name in args.only][: args.cases]

    started = time.monotonic()
    await asyncio.to_thread(get_embedded_server)
    print(f"embedded server ready in {time.monotonic() - started:.1f}s", flush=True)
    totals = {"agent": [0, 0], "naive": [0, 0]}
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            SqlVersionStore.from_url(f"sqlite+aiosqlite:///{tmp}/bench.db") as store,
            create_sandbox(SandboxSettings(), "local") as sandbox,
        ):
            await store.setup()
            for case in cases:
                t0 = time.monotonic()
                counter.count = 0
                agent = await run_agent(case, store, sandbox, args.attempts)
                totals["agent"][0] += agent["at1"]
                totals["agent"][1] += agent["final"]
                line = (
                    f"{case.name:22s} agent: @1={'ok' if agent['at1'] else '--'} "
                    f"@{args.attempts}={'ok' if agent['final'] else '--'} runs={agent['attempts']} "
                    f"resamples={counter.count} errors={agent['errors']} ({time.monotonic() - t0:.0f}s)"
                )
                if args.baseline:
                    t1 = time.monotonic()
                    naive = await run_naive(case, sandbox, args.attempts)
                    totals["naive"][0] += naive["at1"]
                    totals["naive"][1] += naive["final"]
                    line += (
                        f" | naive: @1={'ok' if naive['at1'] else '--'} "
                        f"@{args.attempts}={'ok' if naive['final'] else '--'} ({time.monotonic() - t1:.0f}s)"
                    )
                print(line, flush=True)
    n = len(cases)
    print(f"total time {time.monotonic() - started:.0f}s for {n} cases")
    if args.baseline:
        a1, a3 = totals["naive"]
        rates = f"max_attempts=1 {_rate(a1, n)}, max_attempts={args.attempts} {_rate(a3, n)}"
        print(f"baseline naive repair: {rates}")
    a1, a3 = totals["agent"]
    print(f"autofix fix rate: max_attempts=1 {_rate(a1, n)}, max_attempts={args.attempts} {_rate(a3, n)}")


if __name__ == "__main__":
    asyncio.run(main())
