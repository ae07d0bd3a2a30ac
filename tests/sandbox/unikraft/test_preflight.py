"""Preflight of the Unikraft backend: each check, passing and failing, with its fix hint."""

from __future__ import annotations

from sandbox.unikraft import PreflightCheck, UnikraftSandbox
from tests.sandbox.unikraft.conftest import ukc_settings
from tests.sandbox.unikraft.fake_server import FakeServer


def by_name(checks: list[PreflightCheck]) -> dict[str, PreflightCheck]:
    return {check.name: check for check in checks}


async def test_everything_passes_against_a_healthy_fake(ukc: UnikraftSandbox) -> None:
    checks = by_name(await ukc.preflight())
    assert set(checks) == {
        "unikraft.token",
        "unikraft.api",
        "unikraft.metro",
        "unikraft.image.base",
        "unikraft.image.datascience",
        "unikraft.plugin.image",
        "unikraft.egress",
    }
    assert all(check.ok for check in checks.values()), [c for c in checks.values() if not c.ok]
    assert "metros: fake0" in checks["unikraft.api"].detail
    assert "live memory 0/65536 MB" in checks["unikraft.metro"].detail


async def test_failures_say_what_to_fix(fake: FakeServer) -> None:
    settings = ukc_settings(fake, token="wrong", allow_direct_egress=False, images={"base": "agentic/base:1"})
    async with await UnikraftSandbox.open(settings) as box:
        checks = by_name(await box.preflight())
    assert checks["unikraft.token"].ok
    assert not checks["unikraft.api"].ok and "HTTP 401" in checks["unikraft.api"].detail
    assert "UKC_TOKEN" in checks["unikraft.api"].fix
    assert not checks["unikraft.metro"].ok and "HTTP 401" in checks["unikraft.metro"].detail
    assert "not checked" in checks["unikraft.image.base"].detail  # no pile-up of the same failure
    assert not checks["unikraft.egress"].ok and "ALLOW_DIRECT_EGRESS" in checks["unikraft.egress"].fix


async def test_missing_images_and_token(fake: FakeServer) -> None:
    settings = ukc_settings(fake, images={"base": "agentic/base:2"}, plugin_image="plugins/sandbox:9")
    async with await UnikraftSandbox.open(settings) as box:
        checks = by_name(await box.preflight())
        assert await box.library_sets() == {"base"}
    assert not checks["unikraft.image.base"].ok and "push agentic/base:2" in checks["unikraft.image.base"].fix
    assert not checks["unikraft.plugin.image"].ok
    async with await UnikraftSandbox.open(ukc_settings(fake, token=None, images={})) as box:
        checks = by_name(await box.preflight())
    assert not checks["unikraft.token"].ok and "UKC_TOKEN" in checks["unikraft.token"].fix
    assert "unikraft.api" not in checks  # nothing to ask without a token
    assert (
        not checks["unikraft.images"].ok
        and "AGENTIC_SANDBOX_UNIKRAFT_IMAGES" in checks["unikraft.images"].fix
    )
