"""Preflight of the Unikraft backend: each check, passing and failing, with its fix hint."""

from __future__ import annotations

from sandbox.backends.unikraft import UnikraftSandbox
from sandbox.base import Check
from sandbox.libsets import ready_library_sets
from tests.sandbox.unikraft.conftest import ukc_settings
from tests.sandbox.unikraft.fake_server import FakeServer


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def test_everything_passes_against_a_healthy_fake(ukc: UnikraftSandbox) -> None:
    checks = by_name(await ukc.preflight())
    assert set(checks) == {
        "token",
        "api",
        "metro",
        "image base",
        "image datascience",
        "plugin image",
        "egress",
    }
    assert all(check.ok for check in checks.values()), [c for c in checks.values() if not c.ok]
    assert "metros: fake0" in checks["api"].detail
    assert "live memory 0/65536 MB" in checks["metro"].detail


async def test_failures_say_what_to_fix(fake: FakeServer) -> None:
    settings = ukc_settings(fake, token="wrong", allow_direct_egress=False, images={"base": "agentic/base:1"})
    async with UnikraftSandbox(settings) as box:
        checks = by_name(await box.preflight())
    assert checks["token"].ok
    assert not checks["api"].ok and "HTTP 401" in checks["api"].detail
    assert "UKC_TOKEN" in checks["api"].fix
    assert not checks["metro"].ok and "HTTP 401" in checks["metro"].detail
    assert "not checked" in checks["image base"].detail  # no pile-up of the same failure
    assert not checks["egress"].ok and "ALLOW_DIRECT_EGRESS" in checks["egress"].fix


async def test_missing_images_and_token(fake: FakeServer) -> None:
    settings = ukc_settings(fake, images={"base": "agentic/base:2"}, plugin_image="plugins/sandbox:9")
    async with UnikraftSandbox(settings) as box:
        checks = by_name(await box.preflight())
        sets = await box.library_sets()
        assert ready_library_sets(sets) == {"base"}
        assert "AGENTIC_SANDBOX_UNIKRAFT_IMAGES" in (sets["datascience"] or "")
    assert not checks["image base"].ok and "push agentic/base:2" in checks["image base"].fix
    assert not checks["plugin image"].ok
    unopened = UnikraftSandbox(ukc_settings(fake, token=None, images={}))  # preflight needs no open
    checks = by_name(await unopened.preflight())
    assert not checks["token"].ok and "UKC_TOKEN" in checks["token"].fix
    assert "api" not in checks  # nothing to ask without a token
    assert not checks["images"].ok and "AGENTIC_SANDBOX_UNIKRAFT_IMAGES" in checks["images"].fix
