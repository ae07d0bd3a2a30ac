"""Resource Manager: the tier table, tier choice, and per-request overrides within maximums."""

from __future__ import annotations

import dataclasses

import pytest

from sandbox import resources
from sandbox.base import Limits
from sandbox.config import SandboxSettings
from sandbox.errors import InvalidRunRequestError, LimitsExceededError
from sandbox.resources import TIERS, check_limits, choose_tier, resolve_limits

FIELDS = [f.name for f in dataclasses.fields(Limits)]


def test_tiers_grow_monotonically() -> None:
    assert list(TIERS) == ["light", "medium", "heavy"]
    for name in FIELDS:
        light, medium, heavy = (getattr(TIERS[t], name) for t in TIERS)
        assert light <= medium <= heavy, name
    assert TIERS["light"].memory_mb < TIERS["medium"].memory_mb < TIERS["heavy"].memory_mb


def test_docstring_table_matches_tiers() -> None:
    doc = resources.__doc__ or ""
    for tier, limits in TIERS.items():
        row = next(line.split() for line in doc.splitlines() if line.startswith(tier + " "))
        assert row[1:7] == [
            f"{limits.cpus:g}",
            f"{limits.cpu_seconds:g}",
            str(limits.memory_mb),
            f"{limits.wall_seconds:g}",
            str(limits.pids),
            str(limits.disk_mb),
        ], tier
        assert row[7] == f"{limits.output_bytes // 1_000_000:d}"


def test_default_server_maximums_admit_every_tier() -> None:
    maximums = SandboxSettings().max_limits
    for tier in TIERS:
        assert resolve_limits(tier, maximums=maximums) == TIERS[tier]


@pytest.mark.parametrize(
    ("code_size", "library_set", "declared", "expected"),
    [
        (100, "base", None, "light"),
        (100, "datascience", None, "medium"),
        (100, "datascience", "light", "medium"),  # the set's floor wins over a lower declaration
        (100, "base", "heavy", "heavy"),
        (20_000, "base", None, "light"),
        (20_001, "base", None, "medium"),
        (250_000, "base", None, "heavy"),
        (250_000, "datascience", "light", "heavy"),
        (100, "some-unknown-set", None, "light"),
    ],
)
def test_choose_tier(code_size: int, library_set: str, declared: str | None, expected: str) -> None:
    assert choose_tier(code_size=code_size, library_set=library_set, declared=declared) == expected  # type: ignore[arg-type]


def test_choose_tier_rejects_unknown_declared() -> None:
    with pytest.raises(InvalidRunRequestError, match="unknown tier 'huge'"):
        choose_tier(code_size=1, library_set="base", declared="huge")  # type: ignore[arg-type]


def test_overrides_apply_up_and_down() -> None:
    limits = resolve_limits("light", {"memory_mb": 512, "wall_seconds": 2.5, "pids": 32.0})
    assert limits.memory_mb == 512 and isinstance(limits.memory_mb, int)
    assert limits.wall_seconds == 2.5
    assert limits.pids == 32 and isinstance(limits.pids, int)
    assert limits.cpu_seconds == TIERS["light"].cpu_seconds


def test_override_above_maximum_names_field_value_and_maximum() -> None:
    maximums = dataclasses.replace(TIERS["heavy"], memory_mb=2048)
    with pytest.raises(LimitsExceededError) as info:
        resolve_limits("light", {"memory_mb": 8192}, maximums)
    message = str(info.value)
    assert "memory_mb" in message and "8192" in message and "2048" in message


def test_default_maximum_is_heavy() -> None:
    with pytest.raises(LimitsExceededError, match="wall_seconds"):
        resolve_limits("medium", {"wall_seconds": TIERS["heavy"].wall_seconds + 1})


def test_tier_values_are_clamped_to_lower_server_maximums() -> None:
    maximums = dataclasses.replace(TIERS["heavy"], memory_mb=512, cpus=1.0)
    limits = resolve_limits("heavy", None, maximums)
    assert limits.memory_mb == 512 and limits.cpus == 1.0
    assert limits.wall_seconds == TIERS["heavy"].wall_seconds


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"gpu": 1}, "unknown limit 'gpu'"),
        ({"memory_mb": 0}, "must be positive"),
        ({"memory_mb": -5}, "must be positive"),
        ({"memory_mb": 100.5}, "whole number"),
        ({"wall_seconds": float("inf")}, "finite"),
        ({"pids": True}, "finite number"),
    ],
)
def test_bad_overrides(overrides: dict[str, float], match: str) -> None:
    with pytest.raises(InvalidRunRequestError, match=match):
        resolve_limits("light", overrides)


def test_unknown_tier() -> None:
    with pytest.raises(InvalidRunRequestError, match="unknown tier"):
        resolve_limits("giant", None)  # type: ignore[arg-type]


def test_check_limits_is_public_and_names_field_value_and_maximum() -> None:
    assert "check_limits" in resources.__all__
    check_limits(TIERS["light"], TIERS["heavy"])
    with pytest.raises(LimitsExceededError, match=r"pids=300 exceeds the server maximum pids=256"):
        check_limits(dataclasses.replace(TIERS["light"], pids=300), TIERS["heavy"])
    for bad in (0, -1):
        with pytest.raises(InvalidRunRequestError, match="memory_mb"):
            check_limits(dataclasses.replace(TIERS["light"], memory_mb=bad), TIERS["heavy"])
    with pytest.raises(LimitsExceededError, match="wall_seconds"):
        check_limits(dataclasses.replace(TIERS["light"], wall_seconds=float("inf")), TIERS["heavy"])
