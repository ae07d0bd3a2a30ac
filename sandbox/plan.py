"""Planning a run, once for every caller: which language, which tier, which limits, and whether it fits.

REST runs, ``agentic run``, hosted apps and the agents' tools all ask the same questions before a
sandbox starts; answering them here keeps them from drifting apart (they had: the agents' path
ignored the server's maximums). The plan is made from sizes, before file contents are loaded, so
a request never costs the server more memory than the run's own scratch dir.

The limit guard (:mod:`sandbox.guard`) still clamps whatever reaches a backend: a plan is how a
caller asks, the guard is what holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from sandbox.base import Language, Limits
from sandbox.errors import InvalidRunRequestError
from sandbox.guard import check_files_fit
from sandbox.resources import Tier, choose_tier, resolve_limits

__all__ = ["LANGUAGES", "SUFFIXES", "RunPlan", "language_of", "plan_run", "require_language"]

SUFFIXES: dict[str, Language] = {".py": "python", ".ts": "typescript", ".mts": "typescript"}
"""File suffix -> language: the one table every caller uses."""

LANGUAGES: frozenset[str] = frozenset(SUFFIXES.values())


def language_of(path: str) -> Language | None:
    """The language of ``path`` from its suffix (None for a file we cannot run)."""
    return SUFFIXES.get(PurePosixPath(path).suffix.lower())


def require_language(path: str, declared: str | None = None) -> Language:
    """The declared language, else the one the suffix says.

    Raises:
        InvalidRunRequestError: an unknown declared language, or a suffix that names none.
    """
    if declared is not None:
        if declared not in LANGUAGES:
            known = ", ".join(sorted(LANGUAGES))
            raise InvalidRunRequestError(f"unknown language {declared!r}; languages: {known}")
        return declared  # type: ignore[return-value]
    found = language_of(path)
    if found is None:
        known = ", ".join(sorted(SUFFIXES))
        raise InvalidRunRequestError(
            f"cannot infer the language of {path!r} (known extensions: {known}); set 'language'"
        )
    return found


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What a run will get: its tier and the limits within the operator's maximums."""

    tier: Tier
    limits: Limits


def plan_run(
    *,
    code_size: int,
    file_count: int,
    library_set: str,
    tier: Tier | None = None,
    overrides: Mapping[str, float | int] | None = None,
    maximums: Limits | None = None,
) -> RunPlan:
    """Pick the tier, resolve the limits, and check that the files fit, from sizes alone.

    Args:
        code_size: Total bytes of the files the run carries (stored sizes are fine).
        file_count: How many files it carries.
        library_set: The set it asks for (a set may raise the tier's floor).
        tier: The tier the caller declares, if any.
        overrides: Per-request limit values (refused above ``maximums``, with a message).
        maximums: The operator's maximums (default: the heavy tier).

    Raises:
        InvalidRunRequestError: unknown tier or limit, or files that cannot fit.
        LimitsExceededError: an override above the maximum.
    """
    chosen = choose_tier(code_size=code_size, library_set=library_set, declared=tier)
    limits = resolve_limits(chosen, overrides, maximums)
    check_files_fit(file_count, code_size, limits)
    return RunPlan(tier=chosen, limits=limits)
