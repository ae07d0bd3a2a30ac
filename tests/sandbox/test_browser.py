"""The sandboxed browser's session rules, and the pipe hand-over it relies on (local backend only:
runsc gives a container its own stdio, not extra host pipes, so the gVisor backend refuses them)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from pathlib import Path

import pytest

from sandbox.base import RunRequest, Sandbox
from sandbox.browser import BrowserPool, hosts_browsers
from sandbox.config import BROWSER_LIMITS, SandboxSettings
from sandbox.errors import InvalidRunRequestError, SandboxBusyError, SandboxStartError
from sandbox.guard import GuardedSandbox
from tests.support.leftovers import descendants

ECHO = (
    "import os; data = os.read(3, 100); os.write(4, data.upper()); "
    "print('fds', sorted(os.listdir('/proc/self/fd')))"
)


async def test_pipe_fds_reach_the_program_as_3_and_4(sandbox: Sandbox) -> None:
    to_program, from_host = os.pipe()
    from_program, to_host = os.pipe()
    request = RunRequest(command=("python3", "-c", ECHO), network=True, pipe_fds=(to_program, to_host))
    try:
        os.write(from_host, b"hello")
        if sandbox.name != "local":
            with pytest.raises(SandboxStartError, match="cannot pass host pipes"):
                await sandbox.run(request)
            return
        result = await sandbox.run(request)
        assert result.ok, result.stderr
        assert os.read(from_program, 100) == b"HELLO"
        assert "'3', '4'" in result.stdout, result.stdout
        with pytest.raises(InvalidRunRequestError, match="network"):
            await sandbox.run(dataclasses.replace(request, network=False))
    finally:
        for fd in (to_program, from_host, from_program, to_host):
            os.close(fd)


@pytest.fixture
def short_settings(sandbox_settings: SandboxSettings) -> SandboxSettings:
    limits = dataclasses.replace(BROWSER_LIMITS, wall_seconds=6.0)
    return sandbox_settings.model_copy(update={"browser_limits": limits, "browser_max_sessions": 1})


@pytest.mark.skipif(not os.access("/usr/lib/chromium/chromium", os.X_OK), reason="Chromium not installed")
async def test_sessions_are_capped_and_end_at_their_wall_limit(
    sandbox: Sandbox, short_settings: SandboxSettings
) -> None:
    if sandbox.name != "local":
        pytest.skip("the browser runs on the local backend only (no host pipes into runsc)")
    guarded = GuardedSandbox.from_settings(sandbox, short_settings).for_owner("t")
    pool = BrowserPool(short_settings, wait_s=0.5)
    try:
        async with pool.session(guarded) as browser:
            page = await browser.new_page()
            await page.goto("data:text/html,<p>one</p>")
            with pytest.raises(SandboxBusyError):  # one session at a time here
                async with pool.session(guarded):
                    pass
            await asyncio.sleep(7)  # past the session's wall limit: the run was killed
            assert not browser.is_connected()
        assert not [
            p for p in descendants(os.getpid()) if b"chromium" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert not list(Path(tempfile.gettempdir()).glob(f"agentic-browser-{os.getpid()}-*"))
        async with pool.session(guarded) as browser:  # the slot was given back
            assert browser.is_connected()
    finally:
        await pool.close()


async def test_backends_that_take_a_pipe_run_no_browser_of_their_own(
    sandbox: Sandbox, sandbox_settings: SandboxSettings
) -> None:
    """The seam: the local backends keep the pipe; ``start_browser`` is for backends that say
    ``browser_over_cdp`` (Kata, see tests/sandbox/kata/test_kata_browser.py) and refused otherwise."""
    guarded = GuardedSandbox.from_settings(sandbox, sandbox_settings).for_owner("t")
    assert not hosts_browsers(guarded) and not hosts_browsers(sandbox)
    with pytest.raises(SandboxStartError, match="runs no browser of its own"):
        await guarded.start_browser(RunRequest(command=("chromium",), network=True))
    assert guarded.admission.stats().granted_memory_mb == 0
