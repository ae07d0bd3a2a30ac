"""The one run plan: language from the one table, tier and limits within the maximums, sizes first."""

from __future__ import annotations

import pytest

from sandbox.base import Limits
from sandbox.errors import InvalidRunRequestError, LimitsExceededError
from sandbox.plan import language_of, plan_run, require_language


def test_one_language_table() -> None:
    assert (language_of("a/b.py"), language_of("x.TS"), language_of("m.mts")) == (
        "python",
        "typescript",
        "typescript",
    )
    assert language_of("notes.txt") is None
    assert require_language("notes.txt", "python") == "python"
    with pytest.raises(InvalidRunRequestError, match="known extensions"):
        require_language("notes.txt")
    with pytest.raises(InvalidRunRequestError, match="unknown language"):
        require_language("a.py", "cobol")


def test_plan_within_the_maximums_from_sizes() -> None:
    maximums = Limits(memory_mb=512, wall_seconds=5, disk_mb=1, pids=32, cpu_seconds=10)
    plan = plan_run(code_size=100, file_count=2, library_set="base", tier="heavy", maximums=maximums)
    assert plan.tier == "heavy" and plan.limits.memory_mb == 512 and plan.limits.wall_seconds == 5
    with pytest.raises(LimitsExceededError, match="memory_mb"):
        plan_run(
            code_size=1, file_count=1, library_set="base", overrides={"memory_mb": 1024}, maximums=maximums
        )
    with pytest.raises(InvalidRunRequestError, match="scratch dir"):
        plan_run(code_size=2 * 1024 * 1024, file_count=1, library_set="base", maximums=maximums)
    assert plan_run(code_size=30_000, file_count=1, library_set="base").tier == "medium"
