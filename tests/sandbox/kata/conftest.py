"""Fixtures for the Kata backend: a fake Kubernetes API on 127.0.0.1 and a backend pointed at it.

Every test ends with the fake's two checks: no request body failed its schema, and no object of
a run is left in the fake's store (pods, ConfigMaps, claims, apps).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.kata import KataSandbox, KataSettings
from tests.sandbox.kata.fake_kube import FakeKube

IMAGE = "registry.invalid/agentic-sandbox-base@sha256:" + "0" * 64
RUN_RESOURCES = ("pods", "configmaps", "services", "deployments", "ingresses", "sandboxclaims")


def kata_settings(kubeconfig: Path, **overrides: object) -> KataSettings:
    """Settings for the fake: quick reaper off, short grace, the host's python as the image's."""
    values: dict[str, object] = {
        "kubeconfig": kubeconfig,
        "images": {"base": IMAGE},
        "reap_interval_s": 0,
        "deadline_grace_s": 30,
        "start_timeout_s": 10,
        "python_path": "/usr/bin/python3",
    }
    values.update(overrides)
    return KataSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's aiohttp session trusts proxy variables: keep 127.0.0.1 direct."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def needs_bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("the fake kubelet runs containers in bubblewrap; fix: apt-get install bubblewrap")


def service_ports_allowed() -> bool:
    """The fake's Services listen on their own port (80 for apps) on a loopback address."""
    start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    return os.geteuid() == 0 or (start.exists() and int(start.read_text()) <= 80)


@pytest.fixture
def needs_service_ports() -> None:
    if not service_ports_allowed():
        pytest.skip("the fake's Services listen on port 80; run as root or lower ip_unprivileged_port_start")


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKube]:
    """A fresh fake API server; afterwards nothing of a run may be left and every body was valid."""
    async with FakeKube() as kube:
        yield kube
        left = [key for key in kube.stored() if key[0] in RUN_RESOURCES]
        assert kube.invalid == [], kube.invalid
        assert left == [], f"objects left in the fake API: {left}"


@pytest.fixture
async def kata(fake_kube: FakeKube, tmp_path: Path) -> AsyncIterator[KataSandbox]:
    """The backend, opened against the fake."""
    box = await KataSandbox.open(kata_settings(fake_kube.kubeconfig(tmp_path / "kubeconfig")))
    async with box:
        yield box
