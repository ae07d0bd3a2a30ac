"""Fixtures for the workspace tests: one store per test, on SQLite and on a real Postgres.

Each Postgres test gets its own schema (``search_path`` set in the URL; CREATE DATABASE costs
~0.7 s here, CREATE SCHEMA almost nothing), so migration tests start empty and no test sees
another's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from workspace import SqlVersionStore, Workspace

StoreFactory = Callable[..., SqlVersionStore]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of the parametrized backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'agentic.db'}"
        return
    server_url: str = request.getfixturevalue("postgres_url")
    name = f"ws_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        url = make_url(server_url).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
async def open_stores(db_url: str) -> AsyncIterator[StoreFactory]:
    """A factory of extra stores on the same database (as another process would open); all closed after."""
    stores: list[SqlVersionStore] = []

    def factory(**kwargs: object) -> SqlVersionStore:
        store = SqlVersionStore.from_url(db_url, **kwargs)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.close()


@pytest.fixture
async def store(open_stores: StoreFactory) -> SqlVersionStore:
    """A set-up store on an empty database."""
    s = open_stores()
    await s.setup()
    return s


@pytest.fixture
async def ws(store: SqlVersionStore) -> Workspace:
    """A fresh workspace of the default tenant."""
    return await store.create_workspace("test")
