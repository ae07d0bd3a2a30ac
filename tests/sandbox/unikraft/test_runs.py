"""Runs on the Unikraft backend against the fake: what is asked of the platform, and what comes back."""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from pathlib import Path

import pytest

from sandbox.backends.unikraft import UnikraftSandbox
from sandbox.base import EndReason, Limits, RunRequest, RunResult
from sandbox.errors import (
    InvalidRunRequestError,
    LimitsExceededError,
    SandboxStartError,
    SandboxUnavailableError,
    UnknownLibrarySetError,
)
from sandbox.libsets import ready_library_sets
from tests.sandbox.unikraft.conftest import ukc_settings
from tests.sandbox.unikraft.fake_server import FakeServer


def py(code: str, **kwargs: object) -> RunRequest:
    files = {**kwargs.pop("files", {}), "main.py": code}  # type: ignore[dict-item]
    return RunRequest(files=files, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


async def test_instance_is_made_from_the_request(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    """Image of the library set, memory from Limits, whole vCPUs, the plugin, expiry tags."""
    fake.state.boot_time_us = 42_000
    before = len(fake.state.created_specs)
    result = await ukc.run(py("print('hi')", limits=Limits(memory_mb=300, cpus=1.5, wall_seconds=7)))
    assert result.ok and result.stdout == "hi\n" and result.backend == "unikraft"
    assert result.boot_s == pytest.approx(0.042)  # what the API reported, not our wall time
    assert result.duration_s >= result.boot_s
    (spec,) = fake.state.created_specs[before:]
    assert spec["image"] == "agentic/base:1" and spec["memory_mb"] == 300 and spec["vcpus"] == 2
    assert spec["autostart"] is True and spec["timeout_s"] == ukc.ukc.boot_timeout_s
    assert spec["plugins"] == [{"name": "sandbox", "image": "plugins/sandbox:latest", "config": {}}]
    assert spec["name"].startswith("agentic-run-")
    expiry = next(t for t in spec["tags"] if t.startswith("agentic-expires="))
    left = int(expiry.split("=")[1]) - ukc.control.now()
    budget = ukc.ukc.boot_timeout_s + 7 + ukc.ukc.run_grace_s
    assert budget - 5 < left <= budget + 1
    assert "agentic" in spec["tags"] and "agentic-kind=run" in spec["tags"]


async def test_a_short_run_costs_a_bounded_number_of_requests(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    assert ukc._reaper is not None
    await ukc._reaper  # the listing made when the backend opened (not part of a run)
    mark = fake.mark()
    result = await ukc.run(py("print(1)", files={"pkg/a.py": "", "pkg/b/c.py": ""}))
    assert result.ok, result.stderr
    calls = fake.calls_since(mark)
    # create + read back, plugin ready, 1 mkdir, 3 writes, start, stdin EOF, wait, logs, exit code,
    # delete: 13.
    assert ("POST", "/v1/instances") in calls and calls[-1] == ("DELETE", "/v1/instances")
    mkdirs = [path for method, path in calls if path.endswith("/fs/mkdir")]
    assert len(mkdirs) == 1  # only the deepest directory: its parents come with it
    assert len(calls) <= 13, calls


async def test_wall_time_stops_and_deletes_the_instance(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    mark = fake.mark()
    code = "import time\nprint('before', flush=True)\ntime.sleep(30)\nprint('after')\n"
    result = await ukc.run(py(code, limits=Limits(wall_seconds=1)))
    assert (result.reason, result.exit_code) == (EndReason.TIMEOUT, -9)
    assert result.stdout == "before\n"
    assert 1.0 <= result.duration_s < 4
    calls = fake.calls_since(mark)
    assert calls.index(("PUT", "/v1/instances/stop")) < calls.index(("DELETE", "/v1/instances"))


async def test_out_of_memory_is_what_the_platform_reports(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n"
    result = await ukc.run(py(code, limits=Limits(memory_mb=128, wall_seconds=30)))
    assert (result.reason, result.exit_code) == (EndReason.OOM, -9)


async def test_a_signal_ends_the_run_as_killed(ukc: UnikraftSandbox) -> None:
    result = await ukc.run(py("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"))
    assert (result.reason, result.exit_code) == (EndReason.KILLED, -9)


async def test_consumer_leaving_early_deletes_the_instance(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    marker = f"ukc-early-{uuid.uuid4().hex}"
    code = f"import time\nprint('go', flush=True)\ntime.sleep(60)  # {marker}\n"
    request = RunRequest(files={"main.py": code}, language="python", entry="main.py", args=(marker,))
    agen = ukc.stream(request)
    async for chunk in agen:
        if chunk.data == "go\n":
            break
    assert fake.instance_names() and _processes_with(marker)  # the run is really going
    await agen.aclose()  # type: ignore[attr-defined]
    assert fake.instance_names() == [] and _processes_with(marker) == []


async def test_truncation_skips_output_on_the_instance_side(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    """A capped stream is not downloaded past its cap: reads after it ask for one byte."""
    code = "import sys\nsys.stdout.write('a' * 3_000_000)\nsys.stderr.write('ok')\n"
    result = await ukc.run(py(code, limits=Limits(output_bytes=1000)))
    assert result.stdout == "a" * 1000 and result.stdout_truncated
    assert result.stderr == "ok" and not result.stderr_truncated


async def test_multibyte_characters_survive_chunking(ukc: UnikraftSandbox) -> None:
    chunks: list[str] = []
    async for chunk in ukc.stream(
        py("import sys\nfor _ in range(3):\n    print('é€😀' * 5000, flush=True)\n")
    ):
        if chunk.stream == "stdout":
            chunks.append(chunk.data)
    assert "".join(chunks) == ("é€😀" * 5000 + "\n") * 3


async def test_instance_vanishing_mid_run_is_a_start_error(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    task = asyncio.ensure_future(ukc.run(py("import time\ntime.sleep(20)\n", limits=Limits(wall_seconds=20))))
    while not fake.state.instances or not any(i.commands for i in fake.state.instances.values()):
        await asyncio.sleep(0.02)
    (instance,) = fake.state.instances.values()
    await fake.call(lambda: fake.state.delete(instance))
    with pytest.raises(SandboxStartError, match="disappeared during the run"):
        await task


async def test_plugin_failing_while_the_instance_runs_is_a_start_error(
    ukc: UnikraftSandbox, fake: FakeServer
) -> None:
    fake.cloud.fail("GET", r"/commands/[^/]+/logs$", 500, times=3, message="plugin crashed")
    with pytest.raises(SandboxStartError, match="lost contact with the sandbox plugin"):
        await ukc.run(py("import time\ntime.sleep(0.3)\n"))


async def test_requests_are_checked_before_any_instance_exists(
    ukc: UnikraftSandbox, fake: FakeServer
) -> None:
    assert ukc._reaper is not None
    await ukc._reaper
    mark = fake.mark()
    with pytest.raises(UnknownLibrarySetError, match="AGENTIC_SANDBOX_UNIKRAFT_IMAGES"):
        await ukc.run(py("print(1)", library_set="gpu"))
    with pytest.raises(LimitsExceededError, match="memory_mb"):
        await ukc.run(py("print(1)", limits=Limits(memory_mb=10**6)))
    with pytest.raises(InvalidRunRequestError, match="wall_seconds"):
        await ukc.run(py("print(1)", limits=Limits(wall_seconds=0)))
    with pytest.raises(InvalidRunRequestError, match="scratch dir"):
        await ukc.run(py("print(1)", files={"big.bin": b"x" * (2 << 20)}, limits=Limits(disk_mb=1)))
    with pytest.raises(InvalidRunRequestError, match="argument list is too long"):
        await ukc.run(py("print(1)", args=("x" * (2 << 20),)))
    assert fake.calls_since(mark) == []
    assert ready_library_sets(await ukc.library_sets()) == {"base", "datascience"}


async def test_runs_are_refused_until_direct_egress_is_accepted(fake: FakeServer) -> None:
    async with UnikraftSandbox(ukc_settings(fake, allow_direct_egress=False)) as box:
        with pytest.raises(SandboxUnavailableError, match="ALLOW_DIRECT_EGRESS"):
            await box.run(py("print(1)"))
    async with UnikraftSandbox(ukc_settings(fake, token=None)) as box:
        with pytest.raises(SandboxUnavailableError, match="UKC_TOKEN"):
            await box.run(py("print(1)"))
    box = await UnikraftSandbox(ukc_settings(fake)).open()
    await box.close()
    await box.close()  # idempotent
    with pytest.raises(SandboxStartError, match="closed"):
        await box.run(py("print(1)"))


async def test_proxy_is_handed_to_runs_with_network_only(fake: FakeServer) -> None:
    settings = ukc_settings(fake, egress_proxy_url="http://egress.example:3128")
    async with UnikraftSandbox(settings) as box:
        code = "import os\nprint(os.environ.get('HTTPS_PROXY'))\n"
        with_network = await box.run(py(code, network=True))
        without = await box.run(py(code))
    assert with_network.stdout == "http://egress.example:3128\n" and without.stdout == "None\n"


async def test_results_keep_their_shape(ukc: UnikraftSandbox) -> None:
    result: RunResult = await ukc.run(py("import sys\nprint('x')\nsys.exit(0)\n"))
    assert result.ok and result.peak_memory_mb is None and math.isfinite(result.duration_s)
