"""The threads / runs store on both dialects: SQLite (default) and a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.agent_protocol.storage import ProtocolStore, async_url


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProtocolStore]:
    if request.param == "postgres":
        url = async_url(request.getfixturevalue("postgres_url"), tmp_path)
    else:
        url = async_url(None, tmp_path)
    s = ProtocolStore.from_url(url)
    await s.setup()
    await s.setup()  # migrations run once: the second call is a no-op
    try:
        yield s
    finally:
        await s.close()


async def test_threads_and_runs_round_trip(store: ProtocolStore) -> None:
    tid = str(uuid.uuid4())
    tag = uuid.uuid4().hex
    await store.create_thread(tid, {"tag": tag, "n": 1})
    thread = await store.get_thread(tid)
    assert thread is not None and thread.metadata == {"tag": tag, "n": 1} and thread.status == "idle"
    await store.update_thread(
        tid, status="interrupted", values={"x": [1, "é"]}, interrupts={"t": []}, set_values=True
    )
    thread = await store.get_thread(tid)
    assert thread is not None and thread.values == {"x": [1, "é"]} and thread.status == "interrupted"
    found = await store.search_threads(
        metadata={"tag": tag},
        status=None,
        ids=None,
        limit=10,
        offset=0,
        sort_by="created_at",
        sort_order="desc",
    )
    assert [t.thread_id for t in found] == [tid]

    runs = []
    for _ in range(3):
        runs.append(
            await store.create_run(
                run_id=str(uuid.uuid4()), thread_id=tid, assistant_id="a", metadata={},
                multitask_strategy="enqueue", kwargs={"input": {"q": 1}},
            )
        )  # fmt: skip
        await asyncio.sleep(0.002)
    assert [r.run_id for r in await store.active_runs(tid)] == [r.run_id for r in runs]
    await store.set_run_status(runs[0].run_id, "success")
    await store.set_run_status(runs[1].run_id, "error", "ValueError: boom")
    assert [r.run_id for r in await store.active_runs(tid)] == [runs[2].run_id]
    failed = await store.get_run(runs[1].run_id, tid)
    assert failed is not None and failed.status == "error" and failed.error == "ValueError: boom"
    assert await store.get_run(runs[1].run_id, "other-thread") is None
    listed = await store.list_runs(tid, limit=2, offset=0)
    assert [r.run_id for r in listed] == [runs[2].run_id, runs[1].run_id]
    assert await store.delete_run(runs[0].run_id, tid)
    assert await store.delete_thread(tid)
    assert await store.get_thread(tid) is None and await store.list_runs(tid, limit=10, offset=0) == []


async def test_tenants_and_orphan_claims(store: ProtocolStore) -> None:
    tid = str(uuid.uuid4())
    tag = uuid.uuid4().hex
    await store.create_thread(tid, {"tag": tag}, tenant="alpha")
    assert await store.get_thread(tid, "beta") is None
    assert (await store.get_thread(tid, "alpha")) is not None
    found = await store.search_threads(
        metadata={"tag": tag}, status=None, ids=None, limit=10, offset=0, sort_by="created_at",
        sort_order="desc", tenant="beta",
    )  # fmt: skip
    assert found == []
    now = 1_000_000.0
    runs = {}
    for name, lease in (("dead", now - 1), ("live", now + 60)):
        runs[name] = str(uuid.uuid4())
        await store.create_run(
            run_id=runs[name], thread_id=tid, assistant_id="a", metadata={}, multitask_strategy="enqueue",
            kwargs={}, tenant="alpha", worker_id="w0", lease_until=lease,
        )  # fmt: skip
    assert await store.start_attempt(runs["dead"]) == 1
    # Two processes recover at once: each orphan goes to exactly one of them; a live lease to neither.
    first, second = await asyncio.gather(
        store.claim_orphans("w1", now, now + 30), store.claim_orphans("w2", now, now + 30)
    )
    mine = [r for r in first + second if r.run_id in runs.values()]
    assert [(r.run_id, r.status, r.attempts, r.tenant) for r in mine] == [
        (runs["dead"], "running", 1, "alpha")
    ]
    again = await store.claim_orphans("w3", now, now + 30)  # claimed: its lease is fresh again
    assert all(r.run_id not in runs.values() for r in again)
