"""Admission through REST: a burst gets runs or 429 with Retry-After, never a 5xx or too much memory.

Two tenants against one real server (real local sandbox) whose memory budget holds two medium runs
(1 GB each) at once, one per tenant; requests wait at most a moment for room.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from sandbox.base import Limits
from sandbox.config import LocalSettings, SandboxSettings
from server.app import create_app
from tests.server.conftest import make_settings
from tests.server.support import LiveServer, assert_error

KEY_A = "adm-a-" + uuid.uuid4().hex
KEY_B = "adm-b-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    sandbox = SandboxSettings(
        local=LocalSettings(cgroup_pool_size=2),
        memory_budget_mb=2048,
        tenant_memory_budget_mb=1024,
        admission_wait_s=0.3,
        max_limits=Limits(memory_mb=1024, wall_seconds=10, cpu_seconds=10, pids=64, disk_mb=1),
    )
    settings = make_settings(
        tmp_path_factory.mktemp("admission"),
        api_keys=[f"alpha:{KEY_A}", f"beta:{KEY_B}"],
        sandbox=sandbox,
        rate_limit_per_minute=0,
    )
    with LiveServer(create_app(settings)) as srv:
        yield srv


def _workspace(url: str, key: str) -> str:
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as c:
        return str(c.post("/v1/workspaces", json={"name": "burst"}).json()["id"])


def _peak_granted(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(r"^agentic_sandbox_granted_memory_peak_mb (\S+)$", text, re.M)
    assert found, "no admission gauge in /metrics"
    return float(found.group(1))


async def test_a_burst_gets_runs_or_429_and_memory_stays_within_budget(server: LiveServer) -> None:
    spaces = {KEY_A: _workspace(server.url, KEY_A), KEY_B: _workspace(server.url, KEY_B)}
    code = "import time\ntime.sleep(0.6)\nprint('ok')\n"

    async def one(client: httpx.AsyncClient, key: str) -> httpx.Response:
        return await client.post(
            f"/v1/workspaces/{spaces[key]}/runs",
            json={"code": code, "tier": "medium"},
            headers={"X-API-Key": key},
        )

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        responses = await asyncio.gather(*(one(client, k) for k in [KEY_A, KEY_B] * 6))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {200, 429}, [(r.status_code, r.text[:200]) for r in responses]
    assert codes.count(200) >= 2 and codes.count(429) >= 1, codes
    for r in responses:
        if r.status_code == 429:
            body = assert_error(r, 429, "sandbox_busy")
            assert int(r.headers["Retry-After"]) >= 1 and "retry in" in str(body["message"])
        else:
            assert r.json()["stdout"] == "ok\n"
    assert _peak_granted(server.url) <= 2048


def test_files_too_big_for_the_scratch_dir_are_refused_before_loading(server: LiveServer) -> None:
    ws = _workspace(server.url, KEY_A)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY_A}, timeout=30) as c:
        for i in range(6):  # 6 x 190 kB > the 1 MB scratch dir (each file under the 200 kB file cap)
            r = c.put(f"/v1/workspaces/{ws}/files/f{i}.txt", json={"content": "x" * 190_000})
            assert r.status_code in (200, 201), r.text
        r = c.post(f"/v1/workspaces/{ws}/runs", json={"code": "print(1)"})
        body = assert_error(r, 400, "invalid_run_request")
        assert "scratch dir" in str(body["message"])
