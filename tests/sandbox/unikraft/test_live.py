"""print(1) on the real Unikraft Cloud: skipped unless ``UKC_TOKEN`` (and an image) is configured.

Run it with a token and an image per library set that carries Python 3 at the configured path::

    UKC_TOKEN=... AGENTIC_SANDBOX_UNIKRAFT_METRO=fra \\
    AGENTIC_SANDBOX_UNIKRAFT_IMAGES='{"base": "<org>/<python image>:<tag>"}' \\
    .venv/bin/python -m pytest -q -m unikraft tests/sandbox/unikraft/test_live.py

It creates one instance, runs ``print(1)`` in it and deletes it; it sends traffic to Unikraft Cloud,
which is why it never runs without a token.
"""

from __future__ import annotations

import os

import pytest

from sandbox.backends.unikraft import UnikraftSandbox
from sandbox.base import RunRequest
from sandbox.config import SandboxSettings, UnikraftSettings

pytestmark = [
    pytest.mark.unikraft,
    pytest.mark.skipif(
        not (os.environ.get("UKC_TOKEN") or os.environ.get("AGENTIC_SANDBOX_UNIKRAFT_TOKEN")),
        reason="needs a Unikraft Cloud token: set UKC_TOKEN (and AGENTIC_SANDBOX_UNIKRAFT_IMAGES)",
    ),
]


async def test_print_one_on_unikraft_cloud() -> None:
    settings = SandboxSettings(unikraft=UnikraftSettings(allow_direct_egress=True, reap_interval_s=0))
    if "base" not in settings.images:
        pytest.skip('set AGENTIC_SANDBOX_UNIKRAFT_IMAGES=\'{"base": "<image with python3>"}\'')
    async with UnikraftSandbox(settings) as box:
        failed = [check for check in await box.preflight() if not check.ok]
        assert not failed, failed
        before = {i.name for i in await box.control.list_ours()}
        result = await box.run(RunRequest(files={"main.py": "print(1)"}, language="python", entry="main.py"))
        assert result.ok, (result.reason, result.exit_code, result.stderr)
        assert result.stdout == "1\n" and result.boot_s > 0
        after = {i.name for i in await box.control.list_ours()}
    assert not (after - before), f"instances left: {after - before}"
