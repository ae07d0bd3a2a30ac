"""Conformance: run output retention, per-run cap and per-tenant quota, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from tests.workspace.conftest import StoreFactory
from workspace import SqlVersionStore, Workspace, retention
from workspace.migrations import MIGRATIONS
from workspace.retention import RunOutputPolicy, clip_output
from workspace.schema import search_documents, workspaces

DAY = timedelta(days=1)


def _output(tag: str, size: int) -> str:
    """``size`` ASCII bytes that a search for ``tag`` finds."""
    return (tag + " " + "x" * size)[:size]


async def _stored(store: SqlVersionStore) -> list[tuple[str, str, int]]:
    """(tenant, run_id, size) of every stored run output, oldest first."""
    d = search_documents
    query = (
        select(workspaces.c.tenant, d.c.run_id, d.c.size)
        .join(workspaces, workspaces.c.id == d.c.workspace_id)
        .where(d.c.kind == "run_output")
        .order_by(d.c.created_at, d.c.id)
    )
    async with store._engine.connect() as conn:
        return [(r.tenant, r.run_id, r.size) for r in (await conn.execute(query)).all()]


async def _age(store: SqlVersionStore, by: timedelta, run_id: str | None = None) -> None:
    """Make documents older (all of them, or one run's) as if written ``by`` ago."""
    d = search_documents
    query = update(d).values(created_at=datetime.now(UTC) - by)
    if run_id is not None:
        query = query.where(d.c.run_id == run_id)
    async with store._engine.begin() as conn:
        await conn.execute(query)


def _total(rows: list[tuple[str, str, int]], tenant: str) -> int:
    return sum(size for t, _, size in rows if t == tenant)


# -- retention ----------------------------------------------------------------------------------


async def test_old_outputs_are_swept_after_retention_and_files_stay(open_stores: StoreFactory) -> None:
    store = open_stores(run_outputs=RunOutputPolicy(retention_s=3600))
    await store.setup()
    ws = await store.create_workspace("w")
    v1 = await store.write(ws.id, "keep.py", "print('oldfileword')\n")
    v2 = await store.write(ws.id, "keep.py", "print('newfileword')\n")
    await store.index_run_output(ws.id, "r-old", "stdout", "staleword\n")
    await store.index_run_output(ws.id, "r-new", "stdout", "freshword\n")
    await _age(store, 2 * DAY)  # the file's search document too: age must not touch files
    await _age(store, timedelta(minutes=59), run_id="r-new")  # within the retention

    assert await store.prune_run_outputs() == 1
    assert await store.search(ws.id, "staleword") == []
    assert [h.run_id for h in await store.search(ws.id, "freshword")] == ["r-new"]
    assert [v.id for v in await store.history(ws.id, "keep.py")] == [v1.id, v2.id]
    assert [h.version_id for h in await store.search(ws.id, "newfileword")] == [v2.id]
    # Later, the second one expires too; a sweep with nothing to do deletes nothing.
    assert await store.prune_run_outputs(now=datetime.now(UTC) + timedelta(hours=1)) == 1
    assert await store.prune_run_outputs(now=datetime.now(UTC) + timedelta(hours=1)) == 0
    assert await _stored(store) == []
    assert (await store.read(ws.id, "keep.py")).id == v2.id


async def test_retention_zero_keeps_forever(open_stores: StoreFactory) -> None:
    store = open_stores(run_outputs=RunOutputPolicy(retention_s=0))
    await store.setup()
    ws = await store.create_workspace("w")
    await store.index_run_output(ws.id, "r1", "stdout", "ancientword\n")
    await _age(store, 3650 * DAY)
    assert await store.prune_run_outputs(now=datetime.now(UTC) + 3650 * DAY) == 0
    assert [h.run_id for h in await store.search(ws.id, "ancientword")] == ["r1"]


async def test_sweep_deletes_in_batches(open_stores: StoreFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "_PRUNE_BATCH", 3)  # keep the test small: 7 rows = 3 batches
    store = open_stores(run_outputs=RunOutputPolicy(retention_s=60))
    await store.setup()
    ws = await store.create_workspace("w")
    for i in range(7):
        await store.index_run_output(ws.id, f"r{i}", "stdout", "x")
    await _age(store, DAY)
    assert await store.prune_run_outputs() == 7
    assert await _stored(store) == []


# -- per-run cap --------------------------------------------------------------------------------


async def test_long_output_keeps_head_and_tail_and_the_tail_is_searchable(
    store: SqlVersionStore, ws: Workspace
) -> None:
    # ~1.3 MB, as a chatty failing program prints: the error is at the very end.
    lines = [f"line {i:07d} progress output" for i in range(45_000)]
    output = "headword starting\n" + "\n".join(lines) + "\nTraceback\nZeroDivisionError: tailword\n"
    assert len(output.encode()) > 1_000_000
    await store.index_run_output(ws.id, "r1", "stdout", output)
    cap = store.run_outputs.max_bytes
    async with store._engine.connect() as conn:
        body, size = (await conn.execute(select(search_documents.c.body, search_documents.c.size))).one()
    assert size == len(body.encode()) <= cap
    assert body.startswith("headword starting\n")
    assert body.endswith("\nZeroDivisionError: tailword\n")
    assert "bytes of output cut here" in body and f"capped at {cap} bytes" in body
    assert [h.run_id for h in await store.search(ws.id, "tailword")] == ["r1"]
    assert [h.run_id for h in await store.search(ws.id, "headword")] == ["r1"]
    assert await store.search(ws.id, "0022500") == []  # from the middle: cut


def test_clip_output_bounds() -> None:
    assert clip_output("short", 1000) == "short"
    assert clip_output("a" * 5000, 0) == "a" * 5000  # 0: no cap
    assert clip_output("bad \udc80 surrogate", 1000) == "bad ? surrogate"
    for size in range(256, 1200, 37):  # multi-byte characters are never split
        text_ = "é€😀" * 400 + "END"
        clipped = clip_output(text_, size)
        assert len(clipped.encode()) <= size
        assert clipped.endswith("END") and clipped.startswith("é€😀"[0])
        omitted = len(text_.encode()) - len(clipped.encode())
        assert omitted > 0 and "bytes of output cut here" in clipped
    assert clip_output("abcdef" * 100, 100) == ("abcdef" * 100)[:100]  # too small for a marker


# -- per-tenant quota ---------------------------------------------------------------------------


async def test_tenant_over_quota_loses_its_oldest_outputs_first(open_stores: StoreFactory) -> None:
    store = open_stores(run_outputs=RunOutputPolicy(max_bytes=4000, quota_bytes=10_000))
    await store.setup()
    a1, a2 = await store.create_workspace("a1", "alice"), await store.create_workspace("a2", "alice")
    bob = await store.create_workspace("b", "bob")
    file_version = await store.write(a1.id, "main.py", "print(1)\n" * 500)
    for i in range(3):
        await store.index_run_output(bob.id, f"b{i}", "stdout", _output(f"bobword{i}", 3000))
    for i in range(6):
        await store.index_run_output((a1, a2)[i % 2].id, f"a{i}", "stdout", _output(f"aliceword{i}", 3000))
        rows = await _stored(store)
        assert _total(rows, "alice") <= 10_000
    assert [run for tenant, run, _ in rows if tenant == "alice"] == ["a3", "a4", "a5"]
    assert [run for tenant, run, _ in rows if tenant == "bob"] == ["b0", "b1", "b2"]  # untouched
    assert await store.search(a1.id, "aliceword0") == []
    assert [h.run_id for h in await store.search(a2.id, "aliceword5")] == ["a5"]
    assert [h.run_id for h in await store.search(bob.id, "bobword0")] == ["b0"]
    # Replacing an output does not count the old text against the quota.
    await store.index_run_output(a2.id, "a5", "stdout", _output("aliceword5", 3000))
    assert [run for tenant, run, _ in await _stored(store) if tenant == "alice"] == ["a3", "a4", "a5"]
    # A single output larger than the quota is cut to it and evicts everything older.
    small = open_stores(run_outputs=RunOutputPolicy(max_bytes=50_000, quota_bytes=10_000))
    await small.index_run_output(a1.id, "big", "stdout", _output("bigword", 40_000))
    rows = await _stored(store)
    assert [(run, size) for tenant, run, size in rows if tenant == "alice"] == [("big", 10_000)]
    assert _total(rows, "bob") == 9000
    assert (await store.read(a1.id, "main.py")).id == file_version.id  # files are never deleted


async def test_quota_holds_under_concurrent_writers(open_stores: StoreFactory) -> None:
    policy = RunOutputPolicy(max_bytes=4000, quota_bytes=10_000)
    first, second = open_stores(run_outputs=policy), open_stores(run_outputs=policy)
    await first.setup()
    wss = [await first.create_workspace(f"w{i}", "alice") for i in range(4)]
    writes = [
        (first, second)[i % 2].index_run_output(wss[i % 4].id, f"r{i}", "stdout", _output(f"w{i}", 3000))
        for i in range(24)
    ]
    await asyncio.gather(*writes)
    rows = await _stored(first)
    assert _total(rows, "alice") <= 10_000
    assert len(rows) == 3  # each write made room for itself: exactly the last three remain


async def test_prune_trims_a_tenant_over_a_lowered_quota(open_stores: StoreFactory) -> None:
    unlimited = open_stores(run_outputs=RunOutputPolicy(quota_bytes=0))
    await unlimited.setup()
    ws = await unlimited.create_workspace("w", "alice")
    other = await unlimited.create_workspace("w", "bob")
    for i in range(5):
        await unlimited.index_run_output(ws.id, f"r{i}", "stdout", _output(f"word{i}", 3000))
    await unlimited.index_run_output(other.id, "b", "stdout", _output("bobword", 3000))
    lowered = open_stores(run_outputs=RunOutputPolicy(quota_bytes=10_000))
    assert await lowered.prune_run_outputs() == 2
    rows = await _stored(lowered)
    assert [run for tenant, run, _ in rows if tenant == "alice"] == ["r2", "r3", "r4"]
    assert [run for tenant, run, _ in rows if tenant == "bob"] == ["b"]


# -- migration ----------------------------------------------------------------------------------


async def test_migration_backfills_size_and_time(
    open_stores: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_stores(run_outputs=RunOutputPolicy(retention_s=3600))
    dialect = store.dialect
    full = MIGRATIONS[dialect]
    monkeypatch.setitem(MIGRATIONS, dialect, full[:1])  # a database made by the first release
    await store.setup()
    ws = await store.create_workspace("w")
    async with store._engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO search_documents (workspace_id, kind, run_id, path, version_id, body) "
                "VALUES (:ws, 'run_output', 'r1', 'stdout', NULL, 'café legacyword')"
            ),
            {"ws": ws.id},
        )
    monkeypatch.setitem(MIGRATIONS, dialect, full)
    await store.setup()
    async with store._engine.connect() as conn:
        size, created_at = (
            await conn.execute(select(search_documents.c.size, search_documents.c.created_at))
        ).one()
    assert size == len("café legacyword".encode())
    assert abs(created_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert [h.run_id for h in await store.search(ws.id, "legacyword")] == ["r1"]
    assert await store.prune_run_outputs() == 0  # counted from the upgrade
    assert await store.prune_run_outputs(now=datetime.now(UTC) + 2 * timedelta(hours=1)) == 1
    assert await store.search(ws.id, "legacyword") == []
