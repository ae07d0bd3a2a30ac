"""Latency of ``print(1)`` in the local sandbox against a bare ``python3 -c 'print(1)'``.

Both are measured in the same loop, alternating, so host noise hits both alike:

(a) library: ``await sandbox.run(RunRequest(code print(1)))`` on one ``local`` backend;
(b) HTTP: ``POST /v1/workspaces/{id}/runs {"code": "print(1)"}`` against ``server.app.create_app``
    served by uvicorn on 127.0.0.1 (skipped with a note when the server package is not ready).

Prints p50 / p99 of each and, last, the p50 ratio sandbox / bare for the library call (target <= 1.6).
Run from the repo root: ``python bench/sandbox_latency.py [--runs N]``.
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
from sandbox.config import SandboxSettings  # noqa: E402
from sandbox.registry import available_backends, create_sandbox  # noqa: E402

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


def sandbox_once(sb: Sandbox) -> Callable[[], Awaitable[None]]:
    request = RunRequest(files={"main.py": SNIPPET}, language="python", entry="main.py")

    async def once() -> None:
        result = await sb.run(request)
        if not result.ok or result.stdout != "1\n":
            raise RuntimeError(f"sandbox run failed: {result}")

    return once


async def alternate(
    runs: int, measured: Callable[[], Awaitable[None]], baseline: Callable[[], Awaitable[None]]
) -> tuple[list[float], list[float]]:
    """Run ``measured`` and ``baseline`` in turn ``runs`` times each (after a warm-up)."""
    for _ in range(WARMUP):
        await measured()
        await baseline()
    a: list[float] = []
    b: list[float] = []
    for i in range(runs):
        pair = ((measured, a), (baseline, b)) if i % 2 == 0 else ((baseline, b), (measured, a))
        for fn, samples in pair:
            started = time.perf_counter()
            await fn()
            samples.append(time.perf_counter() - started)
    return a, b


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


async def main(runs: int) -> int:
    settings = SandboxSettings()
    problem = (await available_backends(settings, ["local"]))["local"]
    if problem is not None:
        print(f"local sandbox unavailable: {problem}")
        return 2
    async with create_sandbox(settings, "local") as sb:
        lib, lib_bare = await alternate(runs, sandbox_once(sb), bare_once)
    http = await bench_http(runs)
    print(summary("bare python3 -c (with a)", lib_bare))
    print(summary("(a) sandbox library call", lib))
    if http is not None:
        http_runs, http_bare = http
        print(summary("bare python3 -c (with b)", http_bare))
        print(summary("(b) sandbox over HTTP", http_runs))
        print(f"ratio (b) HTTP/bare p50: {percentile(http_runs, 50) / percentile(http_bare, 50):.2f}")
    print(f"ratio (a) library/bare p99: {percentile(lib, 99) / percentile(lib_bare, 99):.2f}")
    ratio = percentile(lib, 50) / percentile(lib_bare, 50)
    print(f"ratio sandbox/bare p50 (library call, target <= 1.6): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200, help="measured runs of each kind (default 200)")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.runs)))
