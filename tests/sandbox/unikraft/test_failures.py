"""What the platform can do wrong, played back by the fake, and what the backend makes of it."""

from __future__ import annotations

import pytest

from sandbox.backends.unikraft import UnikraftSandbox
from sandbox.base import Limits, RunRequest
from sandbox.errors import SandboxBusyError, SandboxStartError
from sandbox.unikraft import reap_expired
from tests.sandbox.unikraft.conftest import ukc_settings
from tests.sandbox.unikraft.fake_server import FakeServer

HELLO = RunRequest(files={"main.py": "print('hi')"}, language="python", entry="main.py")


@pytest.mark.parametrize(
    "status, error, match",
    [
        (401, SandboxStartError, r"refused the token .*HTTP 401.*UKC_TOKEN"),
        (403, SandboxStartError, r"refused the token .*HTTP 403"),
        (404, SandboxStartError, r"answered 404 .*BASE_URL"),
        (429, SandboxBusyError, r"rate-limiting"),
        (
            500,
            SandboxStartError,
            r"failed while creating an instance of agentic/base:1 \(HTTP 500\): injected",
        ),
        (503, SandboxStartError, r"HTTP 503"),
    ],
)
async def test_api_errors_on_create(
    ukc: UnikraftSandbox, fake: FakeServer, status: int, error: type[Exception], match: str
) -> None:
    fake.cloud.fail("POST", r"^/v1/instances$", status)
    with pytest.raises(error, match=match) as info:
        await ukc.run(HELLO)
    assert info.value.__cause__ is not None  # chained from the SDK's error
    if isinstance(info.value, SandboxBusyError):
        assert info.value.retry_after_s > 0
    assert (await ukc.run(HELLO)).ok  # one failure, not a broken backend


async def test_a_wrong_token_is_named(fake: FakeServer) -> None:
    async with UnikraftSandbox(ukc_settings(fake, token="not-the-token")) as box:
        with pytest.raises(SandboxStartError, match="refused the token"):
            await box.run(HELLO)


async def test_unreachable_api_is_named(fake: FakeServer) -> None:
    settings = ukc_settings(fake, base_url="http://127.0.0.1:9", request_timeout_s=2)
    async with UnikraftSandbox(settings) as box:
        with pytest.raises(SandboxStartError, match=r"cannot reach Unikraft Cloud at http://127.0.0.1:9"):
            await box.run(HELLO)


async def test_missing_image_is_named_and_its_instance_deleted(fake: FakeServer) -> None:
    settings = ukc_settings(fake, images={"base": "agentic/never-pushed:3"})
    async with UnikraftSandbox(settings) as box:
        with pytest.raises(SandboxStartError, match=r"cannot pull image 'agentic/never-pushed:3'.*IMAGES"):
            await box.run(HELLO)
    # the fixture checks that the stopped instance was deleted


async def test_quota_is_named(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    fake.state.quota_live_memory_mb = 200
    with pytest.raises(SandboxStartError, match=r"quota exhausted.*Live memory quota exceeded"):
        await ukc.run(
            RunRequest(files=HELLO.files, language="python", entry="main.py", limits=Limits(memory_mb=256))
        )
    fake.state.quota_live_memory_mb = None


async def test_slow_boot_past_the_timeout_is_a_start_error(fake: FakeServer) -> None:
    fake.state.boot_delay_s = 3.0
    async with UnikraftSandbox(ukc_settings(fake, boot_timeout_s=1)) as box:
        with pytest.raises(SandboxStartError, match=r"did not boot within 1 s \(state starting\)"):
            await box.run(HELLO)


async def test_slow_boot_within_the_timeout_runs(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    fake.state.boot_delay_s, fake.state.boot_time_us = 0.5, 500_000
    result = await ukc.run(HELLO)
    assert result.ok and result.boot_s == pytest.approx(0.5)


async def test_a_failed_delete_is_left_to_the_reaper(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    fake.cloud.fail("DELETE", r"^/v1/instances$", 500, times=ukc.ukc.delete_attempts)
    result = await ukc.run(HELLO)
    assert result.ok  # the run's result does not depend on the clean-up
    (left,) = fake.instance_names()
    assert left.startswith("agentic-run-")
    assert await reap_expired(ukc.control) == []  # not expired yet: still someone's run
    ukc.control.now = lambda: 10.0**10  # type: ignore[method-assign]
    assert await reap_expired(ukc.control) == [left]
