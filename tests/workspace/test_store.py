"""Conformance: workspaces, schema migrations, concurrency and persistence (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import inspect, text

from workspace import InvalidWorkspaceError, SqlVersionStore, VersionStore, Workspace, WorkspaceNotFoundError
from workspace.migrations import MIGRATIONS, latest_version
from workspace.schema import metadata

StoreFactory = Callable[..., SqlVersionStore]


def test_store_satisfies_the_protocol(store: SqlVersionStore) -> None:
    assert isinstance(store, VersionStore)


async def test_workspaces_belong_to_a_tenant(store: SqlVersionStore) -> None:
    a = await store.create_workspace("alpha", tenant="acme")
    b = await store.create_workspace("beta", tenant="acme")
    c = await store.create_workspace("gamma")
    assert a.tenant == "acme" and c.tenant == "default" and a.id != b.id
    assert await store.get_workspace(a.id) == a
    assert await store.get_workspace(a.id, "acme") == a
    with pytest.raises(WorkspaceNotFoundError):
        await store.get_workspace(a.id, "default")
    with pytest.raises(WorkspaceNotFoundError):
        await store.get_workspace("no-such-id")
    assert [w.id for w in await store.list_workspaces("acme")] == [a.id, b.id]
    assert [w.id for w in await store.list_workspaces()] == [c.id]
    assert await store.list_workspaces("nobody") == []


@pytest.mark.parametrize(
    ("name", "tenant"), [("", "t"), ("   ", "t"), ("n", ""), ("x" * 201, "t"), ("a\x00", "t")]
)
async def test_invalid_workspace_names(store: SqlVersionStore, name: str, tenant: str) -> None:
    with pytest.raises(InvalidWorkspaceError):
        await store.create_workspace(name, tenant=tenant)


async def test_setup_is_idempotent_and_recorded(open_stores: StoreFactory) -> None:
    store = open_stores()
    assert await store.schema_version() == 0
    await store.setup()
    await store.setup()
    expected = latest_version(store.dialect)
    assert await store.schema_version() == expected == len(MIGRATIONS[store.dialect])
    async with store._engine.connect() as conn:  # the recorded rows themselves
        result = await conn.execute(text("SELECT version FROM schema_migrations ORDER BY version"))
        rows = result.scalars().all()
    assert rows == list(range(1, expected + 1))


async def test_concurrent_setup_from_two_processes(open_stores: StoreFactory) -> None:
    first, second = open_stores(), open_stores()
    await asyncio.gather(first.setup(), second.setup(), first.setup())
    assert await second.schema_version() == latest_version(second.dialect)
    ws = await first.create_workspace("w")
    assert (await second.write(ws.id, "a", "1")).number == 1


async def test_schema_matches_table_definitions(store: SqlVersionStore) -> None:
    async with store._engine.connect() as conn:

        def columns(sync_conn: object) -> dict[str, set[str]]:
            insp = inspect(sync_conn)
            return {t: {c["name"] for c in insp.get_columns(t)} for t in metadata.tables}

        found = await conn.run_sync(columns)
    for name, table in metadata.tables.items():
        assert {c.name for c in table.columns} <= found[name], name


async def test_twenty_concurrent_writes_get_unique_numbers(store: SqlVersionStore, ws: Workspace) -> None:
    versions = await asyncio.gather(*(store.write(ws.id, "hot.py", f"x = {i}\n") for i in range(20)))
    assert sorted(v.number for v in versions) == list(range(1, 21))
    history = await store.history(ws.id, "hot.py")
    assert [v.number for v in history] == list(range(1, 21))
    assert [v.parent_id for v in history] == [None] + [v.id for v in history[:-1]]
    for prev, cur in zip(history, history[1:], strict=False):  # each diff is against the real parent
        assert f"-{prev.content}" in cur.diff and f"+{cur.content}" in cur.diff
    assert (await store.read(ws.id, "hot.py")).number == 20


async def test_concurrent_writes_from_two_stores(open_stores: StoreFactory, store: SqlVersionStore) -> None:
    other = open_stores()
    ws = await store.create_workspace("shared")
    writes = [(store if i % 2 else other).write(ws.id, "both.py", str(i)) for i in range(16)]
    writes += [store.write(ws.id, f"f{i}.py", str(i)) for i in range(4)]
    results = await asyncio.gather(*writes)
    assert sorted(v.number for v in results[:16]) == list(range(1, 17))
    assert len(await other.list_files(ws.id)) == 5


async def test_data_persists_across_reopen(open_stores: StoreFactory) -> None:
    first = open_stores()
    await first.setup()
    ws = await first.create_workspace("keep", tenant="t1")
    v = await first.write(ws.id, "k.py", "kept\n", author="a", message="m")
    await first.close()
    await first.close()  # idempotent
    again = open_stores()
    await again.setup()
    assert await again.get_workspace(ws.id, "t1") == ws
    assert await again.read(ws.id, "k.py") == v
    assert (await again.write(ws.id, "k.py", "more\n")).number == 2


async def test_async_context_manager_closes(open_stores: StoreFactory) -> None:
    async with open_stores() as s:
        await s.setup()
        assert await s.list_workspaces() == []
    assert s._closed


async def test_setup_runs_only_newer_migrations(
    open_stores: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_stores()
    await store.setup()
    base = latest_version(store.dialect)
    # A later release appends a migration; re-running an applied one would fail ("already exists").
    extended = [*MIGRATIONS[store.dialect], ["CREATE TABLE extra_for_test (x INTEGER)"]]
    monkeypatch.setitem(MIGRATIONS, store.dialect, extended)
    await store.setup()
    await store.setup()
    assert await store.schema_version() == base + 1
    async with store._engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM extra_for_test"))).scalar_one() == 0
    monkeypatch.setitem(MIGRATIONS, store.dialect, extended[:base])  # older code on a newer schema
    await store.setup()
    assert await store.schema_version() == base + 1
