"""Resource Manager: three tiers of limits, picking one per run, and per-request overrides.

==========  ====  ===========  ==========  ============  ====  =========  ====================
tier        cpus  cpu seconds  memory MB   wall seconds  pids  disk MB    output (per stream)
==========  ====  ===========  ==========  ============  ====  =========  ====================
light       1     10           256         10            64    64         1 MB
medium      1     60           1024        60            128   256        4 MB
heavy       2     120          4096        300           256   1024       16 MB
==========  ====  ===========  ==========  ============  ====  =========  ====================

Why these numbers: ``light`` fits a snippet or a unit-test run of stdlib code (a HumanEval task
uses ~10 MB and ~50 ms); ``medium`` fits importing numpy + pandas + matplotlib (~90 MB, ~1 s) and
working on a modest data frame; ``heavy`` is for real data processing on this 2-core host.

Picking (:func:`choose_tier`): the largest of the declared tier, the library set's floor
(``datascience`` needs at least ``medium``) and the code-size floor (more than 20 kB of code is at
least ``medium``, more than 200 kB ``heavy``). A declared tier is a need, so it is never lowered;
asking for less goes through overrides.

Overrides (:func:`resolve_limits`): any :class:`~sandbox.base.Limits` field may be set per request,
up or down, but never above the server maximums (``SandboxSettings.max_limits``); asking for more
raises :class:`~sandbox.errors.LimitsExceededError` naming the field, the value and the maximum.
A tier value above a (lowered) server maximum is clamped silently: the caller did not ask for it.

Every backend calls :func:`check_limits` on the limits a run finally gets (defence in depth: a
caller that built ``Limits`` itself, skipping :func:`resolve_limits`, is refused the same way).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Literal, get_args

from sandbox.base import Limits
from sandbox.errors import InvalidRunRequestError, LimitsExceededError

__all__ = [
    "CODE_SIZE_FLOORS",
    "LIBRARY_SET_FLOORS",
    "TIERS",
    "Tier",
    "check_limits",
    "choose_tier",
    "resolve_limits",
]

Tier = Literal["light", "medium", "heavy"]
_ORDER: tuple[Tier, ...] = get_args(Tier)

TIERS: dict[Tier, Limits] = {
    "light": Limits(
        cpus=1.0,
        cpu_seconds=10.0,
        memory_mb=256,
        wall_seconds=10.0,
        pids=64,
        disk_mb=64,
        output_bytes=1_000_000,
    ),
    "medium": Limits(
        cpus=1.0,
        cpu_seconds=60.0,
        memory_mb=1024,
        wall_seconds=60.0,
        pids=128,
        disk_mb=256,
        output_bytes=4_000_000,
    ),
    "heavy": Limits(
        cpus=2.0,
        cpu_seconds=120.0,
        memory_mb=4096,
        wall_seconds=300.0,
        pids=256,
        disk_mb=1024,
        output_bytes=16_000_000,
    ),
}

LIBRARY_SET_FLOORS: dict[str, Tier] = {"base": "light", "datascience": "medium"}
# (bytes of code strictly above which, tier at least)
CODE_SIZE_FLOORS: tuple[tuple[int, Tier], ...] = ((200_000, "heavy"), (20_000, "medium"))

_FIELDS: dict[str, type] = {
    f.name: (int if f.type in ("int", int) else float) for f in dataclasses.fields(Limits)
}


def _max_tier(*tiers: Tier) -> Tier:
    return max(tiers, key=_ORDER.index)


def choose_tier(*, code_size: int, library_set: str, declared: Tier | None = None) -> Tier:
    """Pick the tier for a run: the largest of the declared, library-set and code-size floors.

    Args:
        code_size: total bytes of the files sent with the run.
        library_set: the set the run asks for (unknown sets count as ``light``; they fail later).
        declared: the tier the caller says it needs, if any.

    Raises:
        InvalidRunRequestError: ``declared`` is not a tier name.
    """
    if declared is not None and declared not in _ORDER:
        raise InvalidRunRequestError(f"unknown tier {declared!r}; tiers: {', '.join(_ORDER)}")
    floors: list[Tier] = [declared or "light", LIBRARY_SET_FLOORS.get(library_set, "light")]
    for threshold, tier in CODE_SIZE_FLOORS:
        if code_size > threshold:
            floors.append(tier)
            break
    return _max_tier(*floors)


def _coerce(name: str, value: float | int) -> float | int:
    if name not in _FIELDS:
        raise InvalidRunRequestError(f"unknown limit {name!r}; limits: {', '.join(_FIELDS)}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRunRequestError(f"limit {name} must be a finite number, got {value!r}")
    if value <= 0:
        raise InvalidRunRequestError(f"limit {name} must be positive, got {value!r}")
    if _FIELDS[name] is int:
        if value != int(value):
            raise InvalidRunRequestError(f"limit {name} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def check_limits(limits: Limits, maximums: Limits) -> None:
    """Refuse non-positive limits and limits above the server maximums (each backend's run path).

    Raises:
        InvalidRunRequestError: a value is not a positive finite number.
        LimitsExceededError: a value is above its maximum (the message names field, value and maximum).
    """
    for name in _FIELDS:
        value, maximum = getattr(limits, name), getattr(maximums, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InvalidRunRequestError(f"limit {name} must be positive, got {value!r}")
        if not math.isfinite(value) or value > maximum:
            raise LimitsExceededError(f"limit {name}={value} exceeds the server maximum {name}={maximum}")


def resolve_limits(
    tier: Tier,
    overrides: Mapping[str, float | int] | None = None,
    maximums: Limits | None = None,
) -> Limits:
    """Return the tier's limits with ``overrides`` applied, within ``maximums``.

    Args:
        tier: the starting tier.
        overrides: per-request values by :class:`Limits` field name.
        maximums: server maximums (default: the ``heavy`` tier).

    Raises:
        InvalidRunRequestError: unknown tier or field, or a value that is not a positive number.
        LimitsExceededError: an override is above the maximum (the message names field, value and maximum).
    """
    if tier not in TIERS:
        raise InvalidRunRequestError(f"unknown tier {tier!r}; tiers: {', '.join(_ORDER)}")
    cap = maximums if maximums is not None else TIERS["heavy"]
    values: dict[str, float | int] = {
        name: min(getattr(TIERS[tier], name), getattr(cap, name)) for name in _FIELDS
    }
    for name, raw in (overrides or {}).items():
        value = _coerce(name, raw)
        maximum = getattr(cap, name)
        if value > maximum:
            raise LimitsExceededError(
                f"limit {name}={value} exceeds the server maximum {name}={maximum} (tier {tier})"
            )
        values[name] = value
    return Limits(**values)  # type: ignore[arg-type]
