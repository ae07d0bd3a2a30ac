"""The backend registry, each backend's preflight, and an ``open`` that keeps the event loop free."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest

from sandbox import registry
from sandbox.base import Check, RunRequest, Sandbox
from sandbox.config import GVisorSettings, LocalSettings, SandboxSettings, UnikraftSettings
from sandbox.errors import SandboxError, SandboxUnavailableError
from sandbox.registry import (
    BACKENDS,
    available_backends,
    backend_class,
    create_sandbox,
    open_sandbox,
    preflight,
    verdict,
)


def _check(checks: list[Check], name: str) -> Check:
    return next(c for c in checks if c.name == name)


# --- the registry ----------------------------------------------------------------------------------


def test_unknown_backend_lists_known_ones() -> None:
    with pytest.raises(SandboxError) as info:
        create_sandbox(SandboxSettings(), "firecracker")
    assert "'firecracker'" in str(info.value)
    assert "gvisor" in str(info.value) and "local" in str(info.value)


def test_unknown_backend_from_settings() -> None:
    with pytest.raises(SandboxError, match="'nope'"):
        create_sandbox(SandboxSettings(backend="nope"))


def test_every_backend_is_a_sandbox_that_does_no_io_when_built(tmp_path: Path) -> None:
    """Constructors only keep the settings: pointing them at nothing that exists is not an error."""
    nowhere = SandboxSettings(
        local=LocalSettings(bwrap_path=tmp_path / "no-bwrap", cgroup_root=tmp_path / "no-cgroups"),
        gvisor=GVisorSettings(runsc_path=tmp_path / "no-runsc", cgroup_root=tmp_path / "no-cgroups"),
        cache_dir=tmp_path / "cache",
    )
    for name in BACKENDS:
        backend = backend_class(name)(nowhere)
        assert isinstance(backend, Sandbox) and backend.name == name
    assert list(tmp_path.iterdir()) == []  # nothing built, staged or pooled


async def test_a_registered_backend_is_found_and_opened_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "local-too", "sandbox.backends.bubblewrap:BubblewrapSandbox")
    settings = SandboxSettings(local=LocalSettings(cgroup_pool_size=0))
    problem = verdict((await preflight(settings, ["local-too"]))["local-too"])
    if problem is not None:
        pytest.skip(f"local sandbox unavailable: {problem}")
    sandbox = await open_sandbox(settings, "local-too")
    try:
        result = await sandbox.run(RunRequest(command=("/usr/bin/python3", "-c", "print(6 * 7)")))
        assert result.ok and result.stdout == "42\n"
    finally:
        await sandbox.close()
        await sandbox.close()  # idempotent


async def test_a_backend_that_cannot_be_imported_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "elsewhere", "")  # removed again after the test
    registry.register_backend("elsewhere", "sandbox.backends.not_written_yet:ElsewhereSandbox")
    with pytest.raises(SandboxUnavailableError, match="'elsewhere' is not installed"):
        create_sandbox(SandboxSettings(), "elsewhere")
    (check,) = (await preflight(SandboxSettings(), ["elsewhere"]))["elsewhere"]
    assert not check.ok and "not installed" in check.detail and check.fix


# --- preflight -------------------------------------------------------------------------------------


# No Unikraft token, whatever the environment holds: a preflight then asks nothing of the network.
OFFLINE = SandboxSettings(unikraft=UnikraftSettings(token=None))


async def test_every_backend_answers_a_preflight_and_every_failure_says_how_to_fix_it() -> None:
    report = await preflight(OFFLINE)
    assert set(report) == set(BACKENDS) >= {"local", "gvisor", "unikraft"}
    for name, checks in report.items():
        assert checks, name
        for check in checks:
            assert check.name and check.detail, (name, check)
            assert check.ok or check.fix, (name, check)
    verdicts = await available_backends(OFFLINE)
    assert verdicts == {name: verdict(checks) for name, checks in report.items()}
    assert verdicts["unikraft"] is not None and "UKC_TOKEN" in verdicts["unikraft"]


async def test_missing_bwrap_is_reported_with_a_fix_hint(tmp_path: Path) -> None:
    settings = SandboxSettings(local=LocalSettings(bwrap_path=tmp_path / "no-bwrap"))
    checks = await create_sandbox(settings, "local").preflight()
    bwrap = _check(checks, "bubblewrap")
    assert not bwrap.ok and bwrap.required
    assert str(tmp_path / "no-bwrap") in bwrap.detail and bwrap.fix == "apt-get install bubblewrap"
    problem = (await available_backends(settings, ["local"]))["local"]
    assert problem is not None
    if _check(checks, "root").ok:  # as root the first failing required check is bubblewrap itself
        assert problem.endswith("fix: apt-get install bubblewrap")


async def test_missing_runsc_is_reported_with_a_fix_hint(tmp_path: Path) -> None:
    settings = SandboxSettings(gvisor=GVisorSettings(runsc_path=tmp_path / "no-runsc"))
    checks = await create_sandbox(settings, "gvisor").preflight()
    runsc = _check(checks, "runsc")
    assert not runsc.ok and runsc.required and "apt-get install runsc" in runsc.fix
    problem = (await available_backends(settings, ["gvisor"]))["gvisor"]
    assert problem is not None and "fix:" in problem


async def test_unwritable_cgroups_are_optional(tmp_path: Path) -> None:
    settings = SandboxSettings(local=LocalSettings(cgroup_root=tmp_path / "no-cgroups"))
    cgroups = _check(await create_sandbox(settings, "local").preflight(), "cgroups v1")
    assert not cgroups.ok and not cgroups.required
    assert "memory" in cgroups.detail and "rlimits" in cgroups.detail and cgroups.fix


# --- open keeps the event loop free ----------------------------------------------------------------


async def _max_loop_lag(work: Awaitable[object]) -> tuple[float, float]:
    """Run ``work`` while a 5 ms ticker measures the event loop's longest stall; (lag, work's duration)."""
    lag = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal lag
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lag = max(lag, time.monotonic() - before - 0.005)

    probe = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)  # the ticker is running
    started = time.monotonic()
    try:
        await work
    finally:
        took = time.monotonic() - started
        done.set()
        await probe
    return lag, took


async def test_open_and_preflight_do_their_host_work_off_the_event_loop(tmp_path: Path) -> None:
    """``open`` compiles the launcher into a fresh cache dir with a compiler that takes a second.

    Were that work done on the event loop, the ticker would stall for all of it.
    """
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    slow_cc = tmp_path / "slow-cc"
    slow_cc.write_text('#!/bin/sh\nsleep 1\nexec cc "$@"\n')
    slow_cc.chmod(0o755)
    settings = SandboxSettings(cache_dir=cache, local=LocalSettings(launcher_cc=str(slow_cc)))
    problem = (await available_backends(SandboxSettings(), ["local"]))["local"]
    if problem is not None:
        pytest.skip(f"local sandbox unavailable: {problem}")
    sandbox = create_sandbox(settings, "local")
    try:
        lag, took = await _max_loop_lag(sandbox.open())
        assert took > 1.0 and any((cache / "bin").iterdir())  # the launcher was really built
        assert lag < 0.5, f"the loop stalled {lag:.3f} s during a {took:.3f} s open"
        assert (await sandbox.run(RunRequest(command=("/bin/true",)))).ok
    finally:
        await sandbox.close()
    lag, took = await _max_loop_lag(create_sandbox(settings, "gvisor").preflight())
    assert lag < 0.5, f"the loop stalled {lag:.3f} s during a {took:.3f} s preflight"


def test_public_names() -> None:
    for name in registry.__all__:
        assert hasattr(registry, name)
