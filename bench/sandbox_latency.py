"""Latency of ``print(1)`` in the sandbox, cold and warm, against a bare ``python3 -c 'print(1)'``.

The variants of each part are measured in one loop, taking turns (the order rotates), so host
noise hits them alike:

(a) library, cold: ``await sandbox.run(RunRequest(code print(1)))`` on one ``local`` backend;
(w) library, warm: the same run on the warm pool in front of a ``local`` backend. After each run
    the pool is given the time to start its replacement and clean up the used one (``pool.ready``,
    ``pool.settled``, not timed), so the timed run finds one idle, as in an agent's loop (run, think,
    run again), and no variant is timed while the pool works in the background. The pool's hit
    counter must show every timed run was a hit;
(f) library, warm fork: the same with forked warm sandboxes (``warm.fork``, :mod:`sandbox.host.warm_fork`);
(g) gVisor, cold and warm, the same way (fewer runs: a cold gVisor run takes ~0.2-0.5 s);
(b) HTTP: ``POST /v1/workspaces/{id}/runs {"code": "print(1)"}`` against ``server.app.create_app``
    served by uvicorn on 127.0.0.1, with the server's default warm pool, back to back with bare
    runs (no waiting for the pool; skipped with a note when the server package is not ready).

Prints the load average before and after (the host is shared), p50 / p99 of each, the gVisor warm
/ cold p50, and, last, the warm / bare ratios (targets: p50 <= 0.5, p99 <= 1.0).
Run from the repo root: ``python bench/sandbox_latency.py [--runs N] [--gvisor-runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox.base import RunRequest, Sandbox  # noqa: E402
from sandbox.config import SandboxSettings, WarmSettings  # noqa: E402
from sandbox.registry import available_backends, create_sandbox  # noqa: E402
from sandbox.warm import WarmPool  # noqa: E402

PYTHON = "/usr/bin/python3"
SNIPPET = "print(1)"
WARMUP = 10


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(label: str, samples: list[float]) -> str:
    return (
        f"{label:32} n={len(samples):4}  p50={percentile(samples, 50) * 1000:7.2f} ms  "
        f"p99={percentile(samples, 99) * 1000:7.2f} ms  mean={statistics.fmean(samples) * 1000:7.2f} ms"
    )


async def bare_once() -> None:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-c", SNIPPET, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0 or out != b"1\n":
        raise RuntimeError(f"bare run failed: {proc.returncode} {out!r} {err!r}")


REQUEST = RunRequest(files={"main.py": SNIPPET}, language="python", entry="main.py")
Step = Callable[[], Awaitable[None]]


async def nothing() -> None:
    """No preparation."""


def sandbox_once(sb: Sandbox) -> Step:
    async def once() -> None:
        result = await sb.run(REQUEST)
        if not result.ok or result.stdout != "1\n":
            raise RuntimeError(f"sandbox run failed: {result}")

    return once


def pool_ready(pool: WarmPool) -> Step:
    """Untimed: give the pool the time to have an idle sandbox (its refill done)."""

    async def ready() -> None:
        if not await pool.ready(REQUEST, timeout_s=120):
            raise RuntimeError(f"the warm pool has no sandbox for print(1): {pool.stats()}")
        await pool.settled()  # the last run's clean-up done too

    return ready


async def take_turns(runs: int, variants: dict[str, tuple[Step, Step]]) -> dict[str, list[float]]:
    """Time each variant's run ``runs`` times, the variants taking turns (the order rotates).

    Each variant is ``(settle, run)``: ``settle`` (not timed) runs before and after ``run``, so what
    a run leaves going in the background (a warm pool's refill) never overlaps another's timing. A
    few rounds are run first, untimed.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(-min(WARMUP, runs), runs):
        turn = names[i % len(names) :] + names[: i % len(names)]
        for name in turn:
            settle, run = variants[name]
            await settle()
            started = time.perf_counter()
            await run()
            if i >= 0:
                samples[name].append(time.perf_counter() - started)
            await settle()
    return samples


async def alternate(runs: int, measured: Step, baseline: Step) -> tuple[list[float], list[float]]:
    """Run ``measured`` and ``baseline`` in turn ``runs`` times each (after a warm-up)."""
    got = await take_turns(runs, {"measured": (nothing, measured), "baseline": (nothing, baseline)})
    return got["measured"], got["baseline"]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def pool_settings(*, fork: bool = False) -> SandboxSettings:
    """Settings of the benched pools: nothing kept warm until asked (``pool.ready``)."""
    return SandboxSettings(warm=WarmSettings(prewarm=[], fork=fork))


async def bench_local(runs: int) -> dict[str, list[float]]:
    """(a) cold, (w) warm, (f) warm fork and bare, taking turns."""
    settings, forked = pool_settings(), pool_settings(fork=True)
    async with (
        create_sandbox(settings, "local") as cold,
        WarmPool(create_sandbox(settings, "local"), settings) as pool,
        WarmPool(create_sandbox(forked, "local"), forked) as fork_pool,
    ):
        samples = await take_turns(
            runs,
            {
                "bare": (nothing, bare_once),
                "cold": (nothing, sandbox_once(cold)),
                "warm": (pool_ready(pool), sandbox_once(pool)),
                "fork": (pool_ready(fork_pool), sandbox_once(fork_pool)),
            },
        )
        stats = [pool.stats(), fork_pool.stats()]
    warm_runs = runs + min(WARMUP, runs)
    for pool_stats in stats:
        if pool_stats.hits != warm_runs or pool_stats.misses:
            raise RuntimeError(f"not every warm run was a hit: {pool_stats}")
    return samples


async def bench_gvisor(runs: int) -> dict[str, list[float]] | None:
    """(g) gVisor cold and warm, taking turns; None (with a note) when gVisor is unavailable here."""
    problem = (await available_backends(SandboxSettings(), ["gvisor"]))["gvisor"]
    if problem is not None:
        print(f"(g) gVisor skipped: {problem}")
        return None
    settings = pool_settings()
    async with (
        create_sandbox(settings, "gvisor") as cold,
        WarmPool(create_sandbox(settings, "gvisor"), settings) as pool,
    ):
        return await take_turns(
            runs, {"cold": (nothing, sandbox_once(cold)), "warm": (pool_ready(pool), sandbox_once(pool))}
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def http_server(data_dir: Path) -> AsyncIterator[str]:
    """Serve ``server.app:create_app`` with uvicorn on 127.0.0.1 in a child process; yield its base URL."""
    import httpx

    port = free_port()
    private = ("AGENTIC_API_KEYS", "DATABASE_URL", "AGENTIC_DATABASE_URL")  # auth off, SQLite in a temp dir
    env = {k: v for k, v in os.environ.items() if k not in private}
    env["AGENTIC_DATA_DIR"] = str(data_dir)
    env["AGENTIC_SANDBOX_DATA_DIR"] = str(SandboxSettings().data_dir)  # keep the built library sets
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "server.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    log = open(data_dir / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    tail = (data_dir / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"server exited ({proc.returncode}): {tail}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not become healthy within 60 s")
                await asyncio.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def bench_http(runs: int) -> tuple[list[float], list[float]] | None:
    """(b): the server's run endpoint; None (with a note) when the server cannot be used."""
    try:
        import httpx

        import server.app  # noqa: F401
    except ImportError as exc:
        print(f"(b) HTTP skipped: the server package is not ready ({exc})")
        return None
    with tempfile.TemporaryDirectory(prefix="agentic-bench-") as tmp:
        try:
            async with http_server(Path(tmp)) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
                created = await client.post("/v1/workspaces", json={"name": "latency-bench"})
                created.raise_for_status()
                url = f"/v1/workspaces/{created.json()['id']}/runs"

                async def http_once() -> None:
                    response = await client.post(url, json={"code": SNIPPET, "language": "python"})
                    body = response.json()
                    if response.status_code != 200 or not body.get("ok") or body.get("stdout") != "1\n":
                        raise RuntimeError(f"HTTP run failed: {response.status_code} {body}")

                return await alternate(runs, http_once, bare_once)
        except (RuntimeError, httpx.HTTPError, KeyError) as exc:
            print(f"(b) HTTP skipped: the server could not be used ({exc})")
            return None


async def main(runs: int, gvisor_runs: int) -> int:
    settings = SandboxSettings()
    problem = (await available_backends(settings, ["local"]))["local"]
    if problem is not None:
        print(f"local sandbox unavailable: {problem}")
        return 2
    print(f"load average before: {load()}")
    local = await bench_local(runs)
    gvisor = await bench_gvisor(gvisor_runs) if gvisor_runs > 0 else None
    http = await bench_http(runs)
    print(f"load average after:  {load()}")
    print(summary("bare python3 -c (with a, w)", local["bare"]))
    print(summary("(a) sandbox library call, cold", local["cold"]))
    print(summary("(w) sandbox library call, warm", local["warm"]))
    print(summary("(f) library call, warm fork", local["fork"]))
    if gvisor is not None:
        print(summary("(g) gVisor, cold", gvisor["cold"]))
        print(summary("(g) gVisor, warm", gvisor["warm"]))
        gvisor_ratio = percentile(gvisor["warm"], 50) / percentile(gvisor["cold"], 50)
        print(f"ratio (g) gVisor warm/cold p50: {gvisor_ratio:.2f}")
    if http is not None:
        http_runs, http_bare = http
        print(summary("bare python3 -c (with b)", http_bare))
        print(summary("(b) sandbox over HTTP", http_runs))
        print(f"ratio (b) HTTP/bare p50: {percentile(http_runs, 50) / percentile(http_bare, 50):.2f}")
    bare = local["bare"]
    cold_ratio = percentile(local["cold"], 50) / percentile(bare, 50)
    print(f"ratio (a) cold/bare p50 (its target <= 1.6): {cold_ratio:.2f}")
    print(f"ratio (a) cold/bare p99: {percentile(local['cold'], 99) / percentile(bare, 99):.2f}")
    print(
        f"ratio (w) warm/bare p99 (target <= 1.0): {percentile(local['warm'], 99) / percentile(bare, 99):.2f}"
    )
    print(
        f"ratio (w) warm/bare p50 (target <= 0.5): {percentile(local['warm'], 50) / percentile(bare, 50):.2f}"
    )
    fork_p99 = percentile(local["fork"], 99) / percentile(bare, 99)
    print(f"ratio (f) fork/bare p99 (target <= 1.0): {fork_p99:.2f}")
    fork_p50 = percentile(local["fork"], 50) / percentile(bare, 50)
    print(f"ratio (f) fork/bare p50 (target <= 0.5): {fork_p50:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200, help="measured runs of each kind (default 200)")
    parser.add_argument(
        "--gvisor-runs", type=int, default=40, help="gVisor runs of each kind (default 40; 0: skip)"
    )
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.runs, args.gvisor_runs)))
