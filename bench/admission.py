"""Admission control under a burst: N concurrent heavy REST runs against one server process.

The server (``agentic``'s app under uvicorn, its own process, real local sandbox) has a memory
budget for running sandboxes smaller than the burst asks for (default: room for three heavy runs,
4 GB each). Each request runs a program that holds its memory a moment (allocates and touches
``--touch-mb``) and sleeps; the client sends them all at once, as two tenants.

Baseline, measured in the same run first: one heavy run alone (its latency). Then the burst.
Every request must end in a run (200) or a refusal with ``Retry-After`` (429); a 5xx or any other
status is a failure. The server's own gauge of the most memory granted at once is read from
``/metrics``. Prints the counts, the burst's p50 / p99 latency against the single run's, and last
the peak granted memory against the budget (must be at most 1.00).
Run from the repo root: ``python bench/admission.py [-n 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.server.agent_protocol.support import ServerProcess  # noqa: E402

KEYS = {"alpha": "bench-alpha-key-0001", "beta": "bench-beta-key-0002"}
HEAVY_MB = 4096


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 for an empty list)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def program(touch_mb: int, sleep_s: float) -> str:
    """Hold ``touch_mb`` of real memory for ``sleep_s``, then print ok."""
    return f"import time\nb = bytearray({touch_mb} * 1024 * 1024)\ntime.sleep({sleep_s})\nprint('ok')\n"


async def run_once(client: httpx.AsyncClient, workspace: str, key: str, code: str) -> tuple[int, float, str]:
    start = time.perf_counter()
    r = await client.post(
        f"/v1/workspaces/{workspace}/runs",
        json={"code": code, "tier": "heavy"},
        headers={"X-API-Key": key},
    )
    elapsed = time.perf_counter() - start
    detail = ""
    if r.status_code == 200 and r.json().get("stdout") != "ok\n":
        detail = f"program output {r.json().get('stdout')!r} {r.json().get('stderr', '')[-200:]!r}"
    elif r.status_code == 429 and not r.headers.get("Retry-After"):
        detail = "429 without Retry-After"
    elif r.status_code not in (200, 429):
        detail = f"{r.status_code}: {r.text[:200]}"
    return r.status_code, elapsed, detail


def peak_granted(url: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics", timeout=10).text

    def gauge(name: str) -> float:
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        if not found:
            raise SystemExit(f"no {name} in /metrics")
        return float(found.group(1))

    return gauge("agentic_sandbox_granted_memory_peak_mb"), gauge("agentic_sandbox_memory_budget_mb")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="concurrent heavy requests")
    parser.add_argument(
        "--budget-mb", type=int, default=3 * HEAVY_MB, help="memory budget of running sandboxes"
    )
    parser.add_argument("--wait-s", type=float, default=2.0, help="how long a request may wait for room")
    parser.add_argument("--touch-mb", type=int, default=64, help="memory each program really touches")
    parser.add_argument("--sleep-s", type=float, default=0.5, help="how long each program holds it")
    args = parser.parse_args()
    env = {
        "AGENTIC_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "AGENTIC_RATE_LIMIT_PER_MINUTE": "0",
        "AGENTIC_SANDBOX_MEMORY_BUDGET_MB": str(args.budget_mb),
        "AGENTIC_SANDBOX_TENANT_MEMORY_BUDGET_MB": str(args.budget_mb),
        "AGENTIC_SANDBOX_ADMISSION_WAIT_S": str(args.wait_s),
        "AGENTIC_LOG_LEVEL": "warning",
    }
    code = program(args.touch_mb, args.sleep_s)
    with (
        tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp,
        ServerProcess(Path(tmp), env, api_key=None) as srv,
    ):
        limits = httpx.Limits(max_connections=args.n + 10, max_keepalive_connections=args.n + 10)
        async with httpx.AsyncClient(base_url=srv.url, timeout=300, limits=limits) as client:
            spaces = {}
            for tenant, key in KEYS.items():
                r = await client.post("/v1/workspaces", json={"name": "bench"}, headers={"X-API-Key": key})
                spaces[tenant] = r.json()["id"]
            # Baseline: one heavy run alone, three times (median).
            alone = sorted(
                [(await run_once(client, spaces["alpha"], KEYS["alpha"], code))[1] for _ in range(3)]
            )[1]
            tenants = list(KEYS)
            jobs = [
                run_once(client, spaces[tenants[i % 2]], KEYS[tenants[i % 2]], code) for i in range(args.n)
            ]
            start = time.perf_counter()
            results = await asyncio.gather(*jobs)
            wall = time.perf_counter() - start
        peak, budget = peak_granted(srv.url)
    ran = [e for status, e, _ in results if status == 200]
    refused = sum(1 for status, _, _ in results if status == 429)
    failures = [d for _, _, d in results if d]
    print(
        json.dumps({"requests": args.n, "ran": len(ran), "refused_429": refused, "failures": len(failures)})
    )
    for detail in failures[:5]:
        print("failure:", detail)
    print(
        f"single heavy run alone: {alone * 1000:.0f} ms; burst of {args.n}: wall {wall:.2f} s, "
        f"run latency p50 {percentile(ran, 50) * 1000:.0f} ms, p99 {percentile(ran, 99) * 1000:.0f} ms "
        f"(p50 / alone = {percentile(ran, 50) / alone:.2f})"
    )
    ratio = peak / budget
    print(f"peak granted memory {peak:.0f} MB / budget {budget:.0f} MB = {ratio:.2f}")
    return 1 if failures or ratio > 1.0 else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
