"""The Unikraft backend's control-plane cost per run: API requests, and our side's time, per run.

Against the fake Unikraft Cloud of the tests (``tests/sandbox/unikraft``: uvicorn on 127.0.0.1 in a
thread of its own, every request checked against the SDK's models; the program itself runs as a
host process), so what is measured is our side only: the backend and the SDK building, sending and
parsing requests. The platform's own latency (boot, network to a metro) is not in these figures.

* baseline: one bare SDK call (``ukc.users.quotas()``: one GET, one parsed envelope);
* per run, ``print(1)`` with an instance of its own, then with a pool of stopped instances
  (the pool's background refill counted in): requests sent, wall time, and the CPU time of the
  thread running the backend (``time.thread_time``: the fake's thread and the program's process
  are not in it).

Prints each figure, and last the ratio of our CPU time per run (instance per run) to one bare SDK
call. Run from the repo root: ``python bench/unikraft_control_plane.py [-n 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox.backends.unikraft import UnikraftSandbox  # noqa: E402
from sandbox.base import RunRequest  # noqa: E402
from sandbox.config import SandboxSettings, UnikraftSettings  # noqa: E402
from tests.sandbox.unikraft.fake_server import FakeServer, fake_unikraft_cloud  # noqa: E402

HELLO = RunRequest(files={"main.py": "print(1)"}, language="python", entry="main.py")


async def _baseline(box: UnikraftSandbox, n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) of one bare SDK call, median of ``n``."""
    walls, cpus = [], []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.thread_time()
        await box.control.client.users.quotas()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


async def _runs(fake: FakeServer, settings: SandboxSettings, n: int) -> tuple[float, float, float]:
    """(requests, wall ms, CPU ms) per run over ``n`` runs of ``print(1)``."""
    async with UnikraftSandbox(settings) as box:
        if box._reaper is not None:
            await box._reaper
        while box.pool.size() < len(box.pool.shapes) * settings.unikraft.pool_size:
            await asyncio.sleep(0.01)
        await box.run(HELLO)  # warm: connections, imports
        mark = fake.mark()
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(n):
            result = await box.run(HELLO)
            assert result.ok and result.stdout == "1\n", result
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        while (
            box.pool.size() < len(box.pool.shapes) * settings.unikraft.pool_size
        ):  # refills belong to the runs
            await asyncio.sleep(0.01)
        requests = len(fake.calls_since(mark))
    return requests / n, wall / n * 1000, cpu / n * 1000


async def main(n: int) -> None:
    with fake_unikraft_cloud() as fake:
        env: dict[str, Any] = fake.settings_env()
        per_run = SandboxSettings(unikraft=UnikraftSettings(**env))
        pooled_section = UnikraftSettings(
            **{**env, "pool_size": 1, "images": {"base": env["images"]["base"]}}
        )
        pooled = SandboxSettings(unikraft=pooled_section)
        async with UnikraftSandbox(per_run) as box:
            base_wall, base_cpu = await _baseline(box, max(50, n))
        req, wall, cpu = await _runs(fake, per_run, n)
        pool_req, pool_wall, pool_cpu = await _runs(fake, pooled, n)
    print(f"baseline, one bare SDK call:  {base_wall:7.2f} ms wall  {base_cpu:6.2f} ms our CPU")
    for label, (r, w, c) in (
        ("instance per run", (req, wall, cpu)),
        ("pool of stopped", (pool_req, pool_wall, pool_cpu)),
    ):
        print(f"{label + ':':18} {r:5.1f} requests/run  {w:7.1f} ms wall/run  {c:6.2f} ms our CPU/run")
    print(
        f"our CPU per run (instance per run) / one bare SDK call: {cpu / base_cpu:.1f} "
        f"({req:.0f} requests per run)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="runs per mode")
    asyncio.run(main(parser.parse_args().n))
