"""The Kata backend against a real cluster: runs only with ``KUBECONFIG`` and ``AGENTIC_SANDBOX_KATA_LIVE=1``.

Never run here (no cluster on this host). To run it where a cluster with Kata Containers exists::

    KUBECONFIG=~/.kube/config AGENTIC_SANDBOX_KATA_LIVE=1 \\
    AGENTIC_SANDBOX_KATA_NAMESPACE=agentic-sandboxes AGENTIC_SANDBOX_KATA_RUNTIME_CLASS=kata-qemu \\
    python -m pytest -m kubernetes tests/sandbox/kata/test_kata_live.py

Every ``AGENTIC_SANDBOX_KATA_*`` variable applies; without ``AGENTIC_SANDBOX_KATA_IMAGES`` the
``base`` set is ``python:3.11-slim-bookworm`` (its python3 is in /usr/local/bin). The browser test
also needs ``AGENTIC_SANDBOX_KATA_BROWSER_IMAGE`` (python3 + Chromium), ``..._EGRESS_PROXY_URL``
and the pod network reachable from where the test runs (it connects to the pod IP); it is skipped
without them. Never run here (no cluster).
"""

from __future__ import annotations

import hashlib
import os

import pytest

from sandbox.base import Limits, RunRequest
from sandbox.browser import BrowserPool
from sandbox.config import SandboxSettings
from sandbox.guard import GuardedSandbox
from sandbox.kata import KataSandbox, KataSettings
from sandbox.kata.naming import MANAGED_SELECTOR

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG") or os.environ.get("AGENTIC_SANDBOX_KATA_LIVE") != "1",
        reason="needs a live cluster with Kata: set KUBECONFIG and AGENTIC_SANDBOX_KATA_LIVE=1",
    ),
]

DEFAULT_IMAGE = "docker.io/library/python:3.11-slim-bookworm"


def live_settings() -> KataSettings:
    settings = KataSettings(reap_interval_s=0, start_timeout_s=300, deadline_grace_s=300)
    if not settings.images:
        settings = settings.model_copy(
            update={"images": {"base": DEFAULT_IMAGE}, "python_path": "/usr/local/bin/python3"}
        )
    return settings


async def test_print_one_on_a_live_cluster() -> None:
    async with await KataSandbox.open(live_settings()) as box:
        checks = await box.preflight()
        failed = [c for c in checks if not c.ok]
        assert not failed, failed
        result = await box.run(
            RunRequest(
                files={"main.py": "print(1)"},
                language="python",
                entry="main.py",
                limits=Limits(wall_seconds=30),
            )
        )
        assert result.ok and result.stdout == "1\n", result
        pods = await box.api.core.list_namespaced_pod(box.settings.namespace, label_selector=MANAGED_SELECTOR)
        assert [p for p in pods.items if p.metadata and p.metadata.deletion_timestamp is None] == []


async def _no_pods_left(box: KataSandbox) -> None:
    pods = await box.api.core.list_namespaced_pod(box.settings.namespace, label_selector=MANAGED_SELECTOR)
    assert [p for p in pods.items if p.metadata and p.metadata.deletion_timestamp is None] == []


async def test_a_large_file_set_goes_in_over_exec_on_a_live_cluster() -> None:
    blob = os.urandom(3_000_000)  # incompressible: past any ConfigMap
    code = "import hashlib; print(hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest())"
    async with await KataSandbox.open(live_settings()) as box:
        result = await box.run(
            RunRequest(
                files={"main.py": code, "blob.bin": blob},
                language="python",
                entry="main.py",
                limits=Limits(wall_seconds=30, disk_mb=32),
            )
        )
        assert result.ok and result.stdout == hashlib.sha256(blob).hexdigest() + "\n", result
        await _no_pods_left(box)


@pytest.mark.skipif(
    not os.environ.get("AGENTIC_SANDBOX_KATA_BROWSER_IMAGE")
    or not os.environ.get("AGENTIC_SANDBOX_KATA_EGRESS_PROXY_URL"),
    reason="needs AGENTIC_SANDBOX_KATA_BROWSER_IMAGE and AGENTIC_SANDBOX_KATA_EGRESS_PROXY_URL",
)
async def test_a_browser_session_on_a_live_cluster() -> None:
    settings = SandboxSettings()
    async with await KataSandbox.open(live_settings()) as box:
        pool = BrowserPool(settings)
        try:
            async with pool.session(GuardedSandbox.from_settings(box, settings).for_owner("live")) as browser:
                page = await browser.new_page()
                await page.goto("data:text/html,<p id=t>live</p>")
                assert await page.inner_text("#t") == "live"
        finally:
            await pool.close()
        await _no_pods_left(box)
