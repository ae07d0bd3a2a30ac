"""The kata backend as the registry builds it (from settings alone), against the fake API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.base import RunRequest
from sandbox.config import SandboxSettings
from sandbox.registry import available_backends, create_sandbox, open_sandbox
from tests.sandbox.kata.conftest import IMAGE
from tests.sandbox.kata.fake_kube import FakeKube


def _env(monkeypatch: pytest.MonkeyPatch, kubeconfig: Path) -> None:
    monkeypatch.setenv("AGENTIC_SANDBOX_KATA_KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("AGENTIC_SANDBOX_KATA_IMAGES", json.dumps({"base": IMAGE}))
    monkeypatch.setenv("AGENTIC_SANDBOX_KATA_REAP_INTERVAL_S", "0")
    monkeypatch.setenv("AGENTIC_SANDBOX_KATA_PYTHON_PATH", "/usr/bin/python3")


async def test_without_a_cluster_preflight_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTIC_SANDBOX_KATA_KUBECONFIG", str(tmp_path / "missing"))
    checks = await create_sandbox(SandboxSettings(), "kata").preflight()
    assert checks[0].name == "kata.api" and not checks[0].ok
    assert "AGENTIC_SANDBOX_KATA_KUBECONFIG" in checks[0].fix
    verdicts = await available_backends(SandboxSettings(), ["kata"])
    assert verdicts["kata"] is not None and "KUBECONFIG" in verdicts["kata"]
    assert verdicts["kata"].count("fix:") == 1  # one fix, said once (as /healthz and doctor show it)


@pytest.mark.usefixtures("needs_bwrap")
async def test_the_registry_opens_kata_and_runs_a_program(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_kube: FakeKube
) -> None:
    _env(monkeypatch, fake_kube.kubeconfig(tmp_path / "kubeconfig"))
    box = await open_sandbox(SandboxSettings(), "kata")
    async with box:
        assert box.name == "kata"
        sets = await box.library_sets()
        assert sets["base"] is None and sets.get("datascience") is not None  # an image for base only
        request = RunRequest(files={"main.py": "print(6 * 7)"}, language="python", entry="main.py")
        result = await box.run(request)
        assert result.ok and result.stdout == "42\n", result
