"""Session-wide fixtures shared by every test package (package-specific ones live beside their tests)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.leftovers import descendants, our_cgroups, our_mounts
from tests.support.postgres import find_pg_bin, postgres_cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server started for this test session (``postgresql://`` URL)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (make test installs it as root)")
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def no_leftovers() -> Iterator[None]:
    """After the whole session: no process, cgroup, mount or temp dir of ours remains.

    Defined here (root conftest, autouse) so it is set up first and torn down last: every other
    package's session-scoped sandbox has closed by the time it looks.
    """
    yield
    leftover_pids: set[int] = set()
    for _ in range(50):
        leftover_pids = descendants(os.getpid())
        if not leftover_pids:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert not leftover_pids, f"processes left: {leftover_pids}"
    assert not our_cgroups(), f"cgroups left: {our_cgroups()}"
    assert not our_mounts(), f"mounts left: {our_mounts()}"
    # Backends name their temp dirs ``agentic-<backend>-<pid>-*``.
    left = list(Path(tempfile.gettempdir()).glob(f"agentic-*-{os.getpid()}-*"))
    assert not left, f"temp dirs left: {left}"
