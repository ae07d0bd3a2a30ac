"""The guard in front of every backend: limits clamped to the maximums, memory and runs admitted.

Admission is tested on its own (it is pure bookkeeping over asyncio) and through the real local
sandbox: a run asking for more than the operator allows runs within the maximum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from sandbox.base import EndReason, Limits, RunRequest
from sandbox.config import DEFAULT_MAX_LIMITS, LocalSettings, SandboxSettings
from sandbox.errors import (
    InvalidRunRequestError,
    LimitsExceededError,
    SandboxBusyError,
    SandboxUnavailableError,
)
from sandbox.guard import Admission, GuardedSandbox, check_files_fit, clamp_limits
from sandbox.registry import create_sandbox
from sandbox.resources import TIERS


def test_clamp_lowers_only_what_is_above_the_maximum() -> None:
    maximums = Limits(pids=20, wall_seconds=2.0, memory_mb=512)
    clamped = clamp_limits(TIERS["heavy"], maximums)
    assert (clamped.pids, clamped.wall_seconds, clamped.memory_mb) == (20, 2.0, 512)
    small = Limits(pids=5, wall_seconds=1.0, memory_mb=64)
    assert clamp_limits(small, maximums) is small


def test_files_are_checked_from_sizes() -> None:
    limits = Limits(disk_mb=1)
    check_files_fit(10, 1024, limits)
    with pytest.raises(InvalidRunRequestError, match="scratch dir"):
        check_files_fit(2, 2 * 1024 * 1024, limits)
    with pytest.raises(InvalidRunRequestError, match="files"):
        check_files_fit(5000, 10, limits)


async def test_granted_memory_never_exceeds_the_budget() -> None:
    admission = Admission(memory_budget_mb=1000, max_running=100)
    running = peak = 0

    async def one(i: int) -> None:
        nonlocal running, peak
        async with admission.admit(f"t{i % 3}", Limits(memory_mb=300, wall_seconds=5), wait_s=10):
            running += 300
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 300

    await asyncio.gather(*(one(i) for i in range(30)))
    assert peak == 900 and admission.stats().peak_granted_memory_mb == 900
    assert admission.stats().granted_memory_mb == 0 and admission.stats().running == 0


async def test_a_run_that_cannot_get_room_is_refused_with_retry_after() -> None:
    admission = Admission(memory_budget_mb=512, max_running=10)
    hold = asyncio.Event()

    async def holder() -> None:
        async with admission.admit("a", Limits(memory_mb=512, wall_seconds=7), wait_s=0):
            await hold.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    start = time.monotonic()
    with pytest.raises(SandboxBusyError) as caught:
        async with admission.admit("b", Limits(memory_mb=256), wait_s=0.2):
            pass
    assert 0.15 < time.monotonic() - start < 2
    assert 1 <= caught.value.retry_after_s <= 7 and "retry in" in str(caught.value)
    hold.set()
    await task
    async with admission.admit("b", Limits(memory_mb=256), wait_s=0):  # room again
        pass
    assert admission.stats().refused == 1


async def test_one_tenant_cannot_take_the_whole_budget() -> None:
    admission = Admission(memory_budget_mb=1000, max_running=10, owner_memory_budget_mb=500)
    async with admission.admit("greedy", Limits(memory_mb=500), wait_s=0):
        with pytest.raises(SandboxBusyError):
            async with admission.admit("greedy", Limits(memory_mb=100), wait_s=0):
                pass
        async with admission.admit("other", Limits(memory_mb=500), wait_s=0):
            assert admission.stats().granted_memory_mb == 1000


async def test_more_than_the_budget_is_a_limit_error_not_a_wait() -> None:
    admission = Admission(memory_budget_mb=1000, max_running=10, owner_memory_budget_mb=600)
    with pytest.raises(LimitsExceededError, match="memory budget"):
        async with admission.admit("a", Limits(memory_mb=700), wait_s=30):
            pass


async def test_run_count_is_capped_per_tenant() -> None:
    admission = Admission(memory_budget_mb=10_000, max_running=10, owner_max_running=2)
    async with admission.admit("a", Limits(memory_mb=1), wait_s=0):
        async with admission.admit("a", Limits(memory_mb=1), wait_s=0):
            with pytest.raises(SandboxBusyError):
                async with admission.admit("a", Limits(memory_mb=1), wait_s=0):
                    pass


@pytest.fixture(scope="module")
async def guarded() -> AsyncIterator[GuardedSandbox]:
    settings = SandboxSettings(
        local=LocalSettings(cgroup_pool_size=1),
        max_limits=Limits(wall_seconds=1.0, pids=16, memory_mb=256, cpu_seconds=10, disk_mb=64),
        memory_budget_mb=1024,
    )
    box = GuardedSandbox.from_settings(create_sandbox(settings, "local"), settings)
    try:
        await box.open()  # the root guard opens its backend
    except SandboxUnavailableError as exc:
        pytest.skip(f"local sandbox unavailable: {exc}")
    async with box:
        yield box


async def test_the_guard_holds_the_maximums_on_a_real_run(guarded: GuardedSandbox) -> None:
    code = "import time\ntime.sleep(5)\nprint('slept')\n"
    request = RunRequest(files={"m.py": code}, language="python", entry="m.py", limits=TIERS["heavy"])
    result = await guarded.for_owner("t1").run(request)
    assert result.reason is EndReason.TIMEOUT and result.duration_s < 3, result
    assert guarded.admission.stats().granted_memory_mb == 0


async def test_streamed_runs_hold_their_grant_until_closed(guarded: GuardedSandbox) -> None:
    code = "import time\nprint('a', flush=True)\ntime.sleep(0.3)\nprint('b')\n"
    request = RunRequest(files={"m.py": code}, language="python", entry="m.py", limits=TIERS["light"])
    chunks = guarded.for_owner("t2").stream(request)
    first = await anext(chunks)
    assert first.data.startswith("a")
    assert guarded.admission.stats().granted_memory_mb == 256
    await chunks.aclose()  # type: ignore[attr-defined]
    assert guarded.admission.stats().granted_memory_mb == 0


def test_partial_maximums_from_the_environment_keep_the_other_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTIC_SANDBOX_MAX_LIMITS", '{"memory_mb": 1024}')
    maximums = SandboxSettings().max_limits
    assert maximums.memory_mb == 1024
    assert (
        maximums.pids == DEFAULT_MAX_LIMITS.pids and maximums.wall_seconds == DEFAULT_MAX_LIMITS.wall_seconds
    )
