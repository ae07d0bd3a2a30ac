"""Backend factory: names, availability report, and a real backend when the host allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import factory
from sandbox.base import RunRequest, Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxError
from sandbox.factory import BACKENDS, available_backends, create_sandbox, host_checks


def test_unknown_backend_lists_known_ones() -> None:
    with pytest.raises(SandboxError) as info:
        create_sandbox(SandboxSettings(), "firecracker")
    assert "'firecracker'" in str(info.value)
    assert "gvisor" in str(info.value) and "local" in str(info.value)


def test_unknown_backend_from_settings() -> None:
    with pytest.raises(SandboxError, match="'nope'"):
        create_sandbox(SandboxSettings(backend="nope"))


def test_available_backends_shape() -> None:
    report = available_backends(SandboxSettings())
    assert set(report) == set(BACKENDS) >= {"local", "gvisor"}
    for reason in report.values():
        assert reason is None or (isinstance(reason, str) and reason)


def test_host_checks_shape() -> None:
    checks = host_checks(SandboxSettings())
    assert set(checks) == {"root", "launcher", "bwrap", "bwrap_works", "cgroups", "runsc", "runsc_works"}


def test_missing_bwrap_gives_fix_hint(tmp_path: Path) -> None:
    settings = SandboxSettings(bwrap_path=tmp_path / "no-bwrap")
    report = available_backends(settings)
    assert report["local"] is not None
    if host_checks(settings)["root"] is None:  # as root the first failing check is bwrap itself
        assert "apt-get install bubblewrap" in report["local"]


def test_missing_runsc_gives_fix_hint(tmp_path: Path) -> None:
    settings = SandboxSettings(runsc_path=tmp_path / "no-runsc")
    checks = host_checks(settings)
    assert checks["runsc"] is not None and "apt-get install runsc" in checks["runsc"]
    assert available_backends(settings)["gvisor"] is not None


def test_cgroups_check_reports_unwritable_root(tmp_path: Path) -> None:
    checks = host_checks(SandboxSettings(cgroup_root=tmp_path / "no-cgroups"))
    assert checks["cgroups"] is not None and "memory" in checks["cgroups"]


async def test_local_backend_runs_when_available() -> None:
    settings = SandboxSettings()
    problem = available_backends(settings)["local"]
    if problem is not None:
        pytest.skip(f"local sandbox unavailable: {problem}")
    sandbox = create_sandbox(settings, "local")
    async with sandbox as sb:
        assert isinstance(sb, Sandbox) and sb.name == "local"
        result = await sb.run(RunRequest(command=("/usr/bin/python3", "-c", "print(6 * 7)")))
    assert result.ok and result.stdout == "42\n"
    await sandbox.close()  # idempotent


def test_public_names() -> None:
    for name in factory.__all__:
        assert hasattr(factory, name)
