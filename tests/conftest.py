"""Session-wide fixtures shared by every test package (package-specific ones live beside their tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import find_pg_bin, postgres_cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server started for this test session (``postgresql://`` URL)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (make test installs it as root)")
    with postgres_cluster() as url:
        yield url
