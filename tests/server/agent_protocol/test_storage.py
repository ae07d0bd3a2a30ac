"""The threads / runs store on both dialects: SQLite (default) and a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.agent_protocol.storage import ProtocolStore, async_url
from server.agent_protocol.storage.events import EventLog
from server.agent_protocol.storage.queue import RunQueue
from server.agent_protocol.storage.sqlite import SqliteRunner
from server.agent_protocol.streaming.streams import RunEvent


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
                run_id=str(uuid.uuid4()),
                thread_id=tid,
                assistant_id="a",
                metadata={},
                multitask_strategy="enqueue",
                kwargs={"input": {"q": 1}},
            )
        )
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
        metadata={"tag": tag},
        status=None,
        ids=None,
        limit=10,
        offset=0,
        sort_by="created_at",
        sort_order="desc",
        tenant="beta",
    )
    assert found == []
    now = 1_000_000.0
    runs = {}
    for name, lease in (("dead", now - 1), ("live", now + 60)):
        runs[name] = str(uuid.uuid4())
        await store.create_run(
            run_id=runs[name],
            thread_id=tid,
            assistant_id="a",
            metadata={},
            multitask_strategy="enqueue",
            kwargs={},
            tenant="alpha",
            worker_id="w0",
            lease_until=lease,
        )
    queue = RunQueue(store)
    assert await queue.start_attempt(runs["dead"]) == 1
    # Two processes recover at once: each orphan goes to exactly one of them; a live lease to neither.
    first, second = await asyncio.gather(
        queue.claim("w1", now, now + 30, 50), queue.claim("w2", now, now + 30, 50)
    )
    mine = [r for r in first + second if r.run_id in runs.values()]
    assert [(r.run_id, r.status, r.attempts, r.tenant) for r in mine] == [
        (runs["dead"], "running", 1, "alpha")
    ]
    again = await queue.claim("w3", now, now + 30, 50)  # claimed: its lease is fresh again
    assert all(r.run_id not in runs.values() for r in again)


async def _runs(store: ProtocolStore, thread_id: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        ids.append(str(uuid.uuid4()))
        await store.create_run(
            run_id=ids[-1],
            thread_id=thread_id,
            assistant_id="a",
            metadata={},
            multitask_strategy="enqueue",
            kwargs={},
        )
        await asyncio.sleep(0.002)
    return ids


async def test_queue_claims_in_order_one_per_thread(store: ProtocolStore) -> None:
    queue = RunQueue(store)
    t1, t2 = str(uuid.uuid4()), str(uuid.uuid4())
    for tid in (t1, t2):
        await store.create_thread(tid, {})
    a = await _runs(store, t1, 3)
    b = await _runs(store, t2, 2)
    now = 2_000_000_000.0
    # Claimers racing: each claimable run goes to one of them; only the oldest run of each thread.
    first, second = await asyncio.gather(
        queue.claim("w1", now, now + 30, 100), queue.claim("w2", now, now + 30, 100)
    )
    claimed = [r.run_id for r in first + second if r.run_id in a + b]
    assert sorted(claimed) == sorted([a[0], b[0]])
    assert all(r.worker_id is None for r in first + second if r.run_id in claimed)  # fresh from the queue
    assert [r.run_id for r in await queue.claim("w3", now, now + 30, 100) if r.run_id in a + b] == []
    # The next run of a thread becomes claimable once the one before it ended.
    await store.set_run_status(a[0], "success")
    again = await queue.claim("w3", now, now + 30, 100, run_id=a[2])
    assert again == []  # a[1] comes first
    assert [r.run_id for r in await queue.claim("w3", now, now + 30, 100) if r.run_id in a + b] == [a[1]]
    # A run with a live owner is not claimable; once its lease runs out it is, with its old owner.
    owner_b = next(r.worker_id for r in await store.active_runs(t2))
    assert owner_b is not None
    later = now + 60
    taken = [r for r in await queue.claim("w4", later, later + 30, 100) if r.run_id in a + b]
    assert sorted((r.run_id, r.worker_id) for r in taken) == sorted([(a[1], "w3"), (b[0], owner_b)])
    # The old owners learn it when they renew: their lease is not extended, the id not returned.
    assert await queue.renew_leases(owner_b, [b[0]], later + 60) == set()
    assert await queue.renew_leases("w4", [a[1], b[0]], later + 60) == {a[1], b[0]}


async def test_cancel_requests(store: ProtocolStore) -> None:
    queue = RunQueue(store)
    tid = str(uuid.uuid4())
    await store.create_thread(tid, {})
    run_a, run_b = await _runs(store, tid, 2)
    now = 2_000_000_000.0
    assert [r.run_id for r in await queue.claim("w1", now, now + 30, 100, run_id=run_a)] == [run_a]
    # Running on w1: another process can only ask; w1 finds the request.
    assert await queue.claim_to_cancel(run_a, "w2", now, now + 30, "interrupt") is None
    assert await queue.request_cancel(run_a, "rollback")
    assert await queue.request_cancel(run_a, "interrupt")  # the first action asked for stays
    assert await queue.cancel_requests("w1") == [(run_a, "rollback")]
    assert await queue.cancel_requests("w2") == []
    # Queued behind it, nobody owns run_b: the canceller claims it to end it itself.
    record = await queue.claim_to_cancel(run_b, "w2", now, now + 30, "interrupt")
    assert record is not None and record.run_id == run_b
    assert await queue.cancel_action(run_b) == "interrupt"
    await store.set_run_status(run_a, "interrupted")
    assert not await queue.request_cancel(run_a, "interrupt")  # ended: nothing to cancel


async def test_event_log_round_trip_and_retention(store: ProtocolStore) -> None:
    flushed: list[str] = []
    log = EventLog(store, flush_s=0.01, on_flushed=flushed.extend)
    log.start()
    tid = str(uuid.uuid4())
    await store.create_thread(tid, {})
    (run_id,) = await _runs(store, tid, 1)
    for i in range(1, 6):
        log.append(run_id, RunEvent(i, "custom", f'{{"i": {i}}}'.encode()))
    await log.flush()
    assert flushed == [run_id]
    flushed.clear()
    log.append(run_id, RunEvent(5, "custom", b'{"i": "again"}'))  # stored already: skipped, not an error
    log.append(run_id, RunEvent(6, "custom", b'{"i": 6}'))
    await log.flush()
    assert [(e.id, e.event, e.data) for e in await log.read(run_id, 2)] == [
        (3, "custom", b'{"i": 3}'),
        (4, "custom", b'{"i": 4}'),
        (5, "custom", b'{"i": 5}'),
        (6, "custom", b'{"i": 6}'),
    ]
    assert await log.last_seq(run_id) == 6
    assert await log.delete_expired(0) == 0  # still active
    await store.set_run_status(run_id, "success")
    assert await log.delete_expired(3600) == 0  # ended just now
    await asyncio.sleep(0.01)
    assert await log.delete_expired(0) == 6
    assert await log.read(run_id, 0) == []
    await log.close()


async def _ticks_while(work: asyncio.Future[object] | asyncio.Task[object]) -> int:
    """How many times the event loop ran a 10 ms sleep while ``work`` was pending."""
    ticks = 0
    while not work.done():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks


def _hold_write_lock(path: Path, seconds: float) -> None:
    """Another process's writer, as SQLite sees it: a connection holding the write lock."""
    import sqlite3
    import time

    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_sqlite_work_waits_for_a_busy_database_off_the_event_loop(tmp_path: Path) -> None:
    store = ProtocolStore.from_url(async_url(None, tmp_path))
    await store.setup()
    try:
        await store.create_thread("free", {})  # the database is free: done on the loop
        database = tmp_path / "agent_protocol.db"
        holder = asyncio.ensure_future(asyncio.to_thread(_hold_write_lock, database, 0.5))
        await asyncio.sleep(0.1)  # the lock is taken
        write = asyncio.ensure_future(store.create_thread("busy", {}))
        ticks = await _ticks_while(write)
        await write
        await holder
        assert ticks >= 10, "the event loop stood still while the database was busy"
        assert (await store.get_thread("busy")) is not None
        runner = store._runner
        assert isinstance(runner, SqliteRunner)
        assert runner.offloaded == 1  # only the busy one went to the thread
    finally:
        await store.close()
