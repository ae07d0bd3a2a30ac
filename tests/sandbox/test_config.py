"""The sandbox settings: one section per backend, each under its own env prefix; older names still read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sandbox.config import GVisorSettings, LocalSettings, SandboxSettings


def test_each_backend_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_SANDBOX_LOCAL_BWRAP_PATH", "/opt/bwrap")
    monkeypatch.setenv("AGENTIC_SANDBOX_LOCAL_CGROUP_POOL_SIZE", "7")
    monkeypatch.setenv("AGENTIC_SANDBOX_GVISOR_CGROUP_POOL_SIZE", "3")
    monkeypatch.setenv("AGENTIC_SANDBOX_GVISOR_RUNSC_PATH", "/opt/runsc")
    monkeypatch.setenv("AGENTIC_SANDBOX_GVISOR_PLATFORM", "kvm")
    settings = SandboxSettings()
    assert settings.local.bwrap_path == Path("/opt/bwrap") and settings.local.cgroup_pool_size == 7
    assert settings.gvisor.cgroup_pool_size == 3 and settings.gvisor.runsc_path == Path("/opt/runsc")
    assert settings.gvisor.platform == "kvm"


def test_names_from_before_the_sections_still_work_below_the_prefixed_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTIC_SANDBOX_BWRAP_PATH", "/old/bwrap")
    monkeypatch.setenv("AGENTIC_SANDBOX_RUNSC_PATH", "/old/runsc")
    monkeypatch.setenv("AGENTIC_SANDBOX_CGROUP_POOL_SIZE", "5")
    monkeypatch.setenv("AGENTIC_SANDBOX_GVISOR_CGROUP_POOL_SIZE", "1")
    settings = SandboxSettings()
    assert settings.local.bwrap_path == Path("/old/bwrap")
    assert settings.gvisor.runsc_path == Path("/old/runsc")
    assert settings.local.cgroup_pool_size == 5  # the old name, for both backends ...
    assert settings.gvisor.cgroup_pool_size == 1  # ... unless the prefixed one is set
    assert LocalSettings(cgroup_pool_size=2).cgroup_pool_size == 2  # code beats the environment


def test_a_backend_setting_at_the_top_is_refused_not_ignored() -> None:
    with pytest.raises(ValidationError, match="cgroup_pool_size -> local / gvisor"):
        SandboxSettings(cgroup_pool_size=2)
    with pytest.raises(ValidationError, match="runsc_path -> gvisor"):
        SandboxSettings(runsc_path=Path("/x"))
    assert SandboxSettings(gvisor=GVisorSettings(cgroup_pool_size=0)).gvisor.cgroup_pool_size == 0
