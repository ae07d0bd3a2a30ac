"""Assistants and stateless runs in the store, on SQLite and a real Postgres.

A database made by the previous schema (version 3) upgrades to the assistants' schema with every
thread and run kept; concurrent patches get consecutive versions; a stateless run's row outlives
its thread until the event retention, then the sweep deletes it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.agent_protocol.errors import AssistantExistsError, AssistantNotFoundError
from server.agent_protocol.storage import ProtocolStore, async_url
from server.agent_protocol.storage.assistants import AssistantStore, AssistantVersionFields
from server.agent_protocol.storage.events import EventLog
from server.agent_protocol.storage.stateless import drop_temporary_thread
from server.agent_protocol.storage.tables import _STEPS, MIGRATIONS, migrations_t
from tests.server.agent_protocol.support import fresh_database
from workspace.migrations import MigrationSet, apply_migrations, current_version


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return async_url(fresh_database(request.getfixturevalue("postgres_url")), tmp_path)
    return async_url(None, tmp_path)


@pytest.fixture
async def store(url: str) -> AsyncIterator[ProtocolStore]:
    s = ProtocolStore.from_url(url)
    await s.setup()
    try:
        yield s
    finally:
        await s.close()


def _fields(**change: object) -> AssistantVersionFields:
    base = {"graph_id": "agent", "config": {}, "context": {"tier": "light"}, "metadata": {}, "name": "a"}
    return AssistantVersionFields(**{**base, **change})  # type: ignore[arg-type]


async def test_a_version_3_database_upgrades_and_keeps_its_rows(url: str) -> None:
    old = ProtocolStore.from_url(url)
    try:
        async with old.engine.begin() as conn:  # what the previous release made
            three = MigrationSet(
                "agent protocol", migrations_t, {"sqlite": _STEPS[:3], "postgresql": _STEPS[:3]}
            )
            assert await apply_migrations(conn, three) == 3
        tid, rid = str(uuid.uuid4()), str(uuid.uuid4())
        await old.create_thread(tid, {"kept": True}, "acme")
        await old.create_run(
            run_id=rid,
            thread_id=tid,
            assistant_id="a",
            metadata={"m": 1},
            multitask_strategy="enqueue",
            kwargs={"input": {"q": 1}},
            tenant="acme",
        )
    except Exception:
        await old.close()
        raise
    await old.close()

    new = ProtocolStore.from_url(url)
    try:
        await new.setup()
        async with new.engine.connect() as conn:
            assert await current_version(conn, MIGRATIONS) == len(_STEPS) == 4
        thread = await new.get_thread(tid, "acme")
        assert thread is not None and thread.metadata == {"kept": True}
        run = await new.get_run(rid, tid)
        assert run is not None and run.kwargs == {"input": {"q": 1}} and run.result is None
        created = await AssistantStore(new).create(str(uuid.uuid4()), "acme", _fields())
        assert created.version == 1
    finally:
        await new.close()


async def test_versions_concurrent_patches_and_tenants(store: ProtocolStore) -> None:
    assistants = AssistantStore(store)
    aid = str(uuid.uuid4())
    await assistants.create(aid, "acme", _fields(metadata={"a": 1}))
    with pytest.raises(AssistantExistsError):
        await assistants.create(aid, "other", _fields())
    patched = await asyncio.gather(
        *(assistants.add_version(aid, "acme", {"metadata": {f"k{i}": i}}) for i in range(5))
    )
    assert sorted(p.version for p in patched if p is not None) == [2, 3, 4, 5, 6]
    latest = await assistants.get(aid, "acme")
    assert latest is not None and latest.version == 6 and latest.metadata["a"] == 1
    versions = await assistants.versions(aid, "acme")
    assert versions is not None and [v.version for v in versions] == [6, 5, 4, 3, 2, 1]
    assert await assistants.get(aid, "other") is None
    assert await assistants.versions(aid, "other") is None
    assert await assistants.add_version(aid, "other", {"name": "x"}) is None
    assert await assistants.set_latest(aid, "other", 1) is None
    assert not await assistants.delete(aid, "other")
    back = await assistants.set_latest(aid, "acme", 1)
    assert back is not None and back.version == 1 and back.metadata == {"a": 1}
    with pytest.raises(AssistantNotFoundError, match="no version 7"):
        await assistants.set_latest(aid, "acme", 7)
    assert await assistants.delete(aid, "acme")
    assert await assistants.get(aid, "acme") is None
    rows = await store.read(
        lambda conn: conn.execute(
            sa.text("SELECT count(*) FROM ap_assistant_versions WHERE assistant_id = :a"), {"a": aid}
        ).scalar()
    )
    assert rows == 0


async def test_stateless_run_row_outlives_its_thread_until_the_sweep(store: ProtocolStore) -> None:
    tid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    await store.create_thread(tid, {})
    await store.create_run(
        run_id=rid, thread_id=tid, assistant_id="a", metadata={}, multitask_strategy="enqueue", kwargs={}
    )
    await store.set_run_status(rid, "success")
    await store.write(drop_temporary_thread(rid, tid, {"steps": ["done"]}))
    assert await store.get_thread(tid) is None
    run = await store.get_run(rid, tid)
    assert run is not None and run.result == {"steps": ["done"]}
    log = EventLog(store, flush_s=0.01)
    await log.delete_expired(3600)
    assert await store.get_run(rid, tid) is not None  # within the retention: a waiter may still read it
    await asyncio.sleep(0.01)
    await log.delete_expired(0)
    assert await store.get_run(rid, tid) is None
