"""The Unikraft section of the sandbox settings from the environment, and the package's public names."""

from __future__ import annotations

import pytest

import sandbox.unikraft as package
from sandbox.config import SandboxSettings, UnikraftSettings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKC_TOKEN", "from-ukc")
    monkeypatch.setenv("AGENTIC_SANDBOX_UNIKRAFT_METRO", "DAL")
    monkeypatch.setenv("AGENTIC_SANDBOX_UNIKRAFT_IMAGES", '{"base": "org/base:1"}')
    monkeypatch.setenv("AGENTIC_SANDBOX_MAX_LIMITS", '{"memory_mb": 512}')  # the shared maximums
    monkeypatch.setenv("AGENTIC_SANDBOX_UNIKRAFT_POOL_TIERS", '["light", "heavy"]')
    shared = SandboxSettings()
    settings = shared.unikraft
    assert settings.token_value() == "from-ukc"
    assert settings.platform_url == "https://api.dal.unikraft.cloud"
    assert settings.images == {"base": "org/base:1"}
    assert shared.max_limits.memory_mb == 512 and not hasattr(settings, "max_limits")  # one maximum for all
    assert settings.pool_tiers == ["light", "heavy"]
    assert "from-ukc" not in repr(settings)  # the token is a secret
    monkeypatch.setenv("AGENTIC_SANDBOX_UNIKRAFT_TOKEN", "own")
    monkeypatch.setenv("AGENTIC_SANDBOX_UNIKRAFT_BASE_URL", "http://127.0.0.1:1/")
    settings = UnikraftSettings()
    assert settings.token_value() == "own" and settings.platform_url == "http://127.0.0.1:1"


def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_SANDBOX_UNIKRAFT_POOL_TIERS", '["huge"]')
    with pytest.raises(ValueError, match="pool_tiers"):
        UnikraftSettings()


def test_public_names_exist() -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None, name
