"""Two real server processes on one Postgres share the run queue, the streams and the cancels.

Each process executes at most one run at a time (``AGENTIC_MAX_CONCURRENT_RUNS=1``), so while one
is busy the other must take the next run: a test first puts a slow "blocker" run on one process
(the sample graph reports its process id in every custom event), then drives a second run through
that same process and checks it executed on the other one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.agent_protocol.support import ServerProcess, fresh_database

SAMPLE_GRAPH = "tests.server.agent_protocol.sample_graphs:graph"
SLOW = {"ticks": 400, "delay": 0.05}  # 20 s unless cancelled


def _env(url: str, **extra: str) -> dict[str, str]:
    return {
        "AGENTIC_GRAPH_REF": SAMPLE_GRAPH,
        "AGENTIC_DATABASE_URL": url,
        "AGENTIC_MAX_CONCURRENT_RUNS": "1",
        "AGENTIC_HEARTBEAT_S": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def pair(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two server processes on one fresh Postgres database."""
    url = fresh_database(postgres_url, "ap_queue_")
    with (
        ServerProcess(tmp_path_factory.mktemp("ap-a"), _env(url)) as a,
        ServerProcess(tmp_path_factory.mktemp("ap-b"), _env(url)) as b,
    ):
        yield [a, b]


@pytest.fixture
async def clients(pair: list[ServerProcess]) -> AsyncIterator[list[LangGraphClient]]:
    """One langgraph-sdk client per process."""
    made = [get_client(url=s.url, api_key=s.api_key) for s in pair]
    try:
        yield made
    finally:
        for c in made:
            await c.aclose()


async def _status(client: LangGraphClient, tid: str, run_id: str, want: str, within: float) -> float:
    start = time.monotonic()
    while (status := (await client.runs.get(tid, run_id))["status"]) != want:
        assert time.monotonic() - start < within, f"run still {status} after {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _block(client: LangGraphClient) -> tuple[str, str, int]:
    """Start a slow run through ``client``; return its thread, id and the pid executing it."""
    tid = (await client.threads.create())["thread_id"]
    async for part in client.runs.stream(tid, "agent", input=SLOW, stream_mode="custom"):
        if part.event == "metadata":
            run_id = part.data["run_id"]
        if part.event == "custom":
            return tid, run_id, int(part.data["pid"])
    raise AssertionError("the blocker produced no event")


def _worker_ids(url: str, run_ids: list[str]) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        query = "SELECT run_id, worker_id FROM ap_runs WHERE run_id = ANY(%s)"
        rows = conn.execute(query, [run_ids]).fetchall()
    return {r[0]: r[1] for r in rows}


async def _queue_depth(client: LangGraphClient) -> float:
    text = (await client.http.client.get("/metrics")).text
    lines = text.splitlines()
    return next(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith("agentic_run_queue_depth"))


async def test_two_processes_share_the_queue(
    clients: list[LangGraphClient], pair: list[ServerProcess]
) -> None:
    a = clients[0]
    runs = []
    for _ in range(6):  # all accepted by A; each process executes one at a time
        tid = (await a.threads.create())["thread_id"]
        runs.append((tid, (await a.runs.create(tid, "agent", input={"ticks": 20, "delay": 0.1}))["run_id"]))
    # The queue-depth gauge is the number of pending runs in the database, refreshed by the worker.
    async with asyncio.timeout(3):
        while await _queue_depth(a) < 1:
            await asyncio.sleep(0.1)
    for tid, run_id in runs:
        await a.runs.join(tid, run_id)
        assert (await a.runs.get(tid, run_id))["status"] == "success"
    owners = _worker_ids(pair[0]._env["AGENTIC_DATABASE_URL"], [r for _, r in runs])
    assert len(set(owners.values())) == 2, owners  # both processes executed some
    async with asyncio.timeout(3):
        while await _queue_depth(clients[1]) != 0:
            await asyncio.sleep(0.1)


async def test_stream_and_join_a_run_executing_on_the_other_process(
    clients: list[LangGraphClient], pair: list[ServerProcess]
) -> None:
    btid, blocker, pid = await _block(clients[0])
    here = clients[[s.pid for s in pair].index(pid)]  # the busy process; the next run goes elsewhere
    other_pid = next(s.pid for s in pair if s.pid != pid)
    try:
        tid = (await here.threads.create())["thread_id"]
        parts = [
            p
            async for p in here.runs.stream(
                tid, "agent", input={"ticks": 8, "delay": 0.05}, stream_mode=["custom", "values"]
            )
        ]
        assert parts[0].event == "metadata"
        run_id = parts[0].data["run_id"]
        custom = [p.data for p in parts if p.event == "custom"]
        assert [c["tick"] for c in custom] == list(range(8))
        assert {c["pid"] for c in custom} == {other_pid}
        assert parts[-1].event == "values" and parts[-1].data["steps"] == ["work", "auto"]
        # Rejoin after the end from an event id: the rest comes from the event table, in order.
        again = [p async for p in here.runs.join_stream(tid, run_id, last_event_id="3")]  # 3: tick 0
        assert [p.data["tick"] for p in again if p.event == "custom"] == list(range(1, 8))

        # A background run on the other process: join and wait through this one.
        run = await here.runs.create(tid, "agent", input={"ticks": 6, "delay": 0.05})
        joined = await here.runs.join(tid, run["run_id"])
        assert joined["steps"] == ["work", "auto", "work", "auto"]
        run2 = await here.runs.create(tid, "agent", input={"ticks": 20, "delay": 0.05}, stream_mode="custom")
        await _status(here, tid, run2["run_id"], "running", within=5)
        live = [p async for p in here.runs.join_stream(tid, run2["run_id"])]
        ticks = [p.data["tick"] for p in live if p.event == "custom"]
        assert ticks and ticks == sorted(ticks) and ticks[-1] == 19
        assert {p.data["pid"] for p in live if p.event == "custom"} == {other_pid}
    finally:
        await here.runs.cancel(btid, blocker, wait=True)


async def test_cancel_a_run_executing_on_the_other_process(
    clients: list[LangGraphClient], pair: list[ServerProcess]
) -> None:
    btid, blocker, pid = await _block(clients[1])
    here = clients[[s.pid for s in pair].index(pid)]
    try:
        tid = (await here.threads.create())["thread_id"]
        run = await here.runs.create(tid, "agent", input=SLOW)
        await _status(here, tid, run["run_id"], "running", within=5)
        start = time.monotonic()
        await here.runs.cancel(tid, run["run_id"], wait=True)
        assert time.monotonic() - start < 2.0
        assert (await here.runs.get(tid, run["run_id"]))["status"] == "interrupted"
        assert (await here.threads.get(tid))["status"] == "idle"

        # A client that leaves with on_disconnect="cancel" cancels it on the other process too.
        stream = here.runs.stream(tid, "agent", input=SLOW, stream_mode="custom", on_disconnect="cancel")
        run_id = None
        async for part in stream:
            if part.event == "metadata":
                run_id = part.data["run_id"]
            if part.event == "custom":
                assert part.data["pid"] != pid
                break
        await stream.aclose()  # type: ignore[attr-defined]
        assert run_id is not None
        assert await _status(here, tid, run_id, "interrupted", within=3) < 2.0

        # multitask "interrupt" through this process stops the run on the other one.
        first = await here.runs.create(tid, "agent", input=SLOW)
        await _status(here, tid, first["run_id"], "running", within=5)
        start = time.monotonic()
        second = await here.runs.create(tid, "agent", input={"ticks": 1}, multitask_strategy="interrupt")
        assert time.monotonic() - start < 2.0
        assert (await here.runs.get(tid, first["run_id"]))["status"] == "interrupted"
        await here.runs.join(tid, second["run_id"])
        assert (await here.runs.get(tid, second["run_id"]))["status"] == "success"
    finally:
        await here.runs.cancel(btid, blocker, wait=True)
    assert (await here.runs.get(btid, blocker))["status"] == "interrupted"


async def test_enqueue_order_holds_across_processes(
    clients: list[LangGraphClient], pair: list[ServerProcess]
) -> None:
    tid = (await clients[0].threads.create())["thread_id"]
    run_ids = []
    for i in range(6):  # alternate the accepting process; they all queue on one thread
        c = clients[i % 2]
        body: dict[str, Any] = {"steps": [f"r{i}"], "ticks": 2, "delay": 0.05}
        run = await c.runs.create(tid, "agent", input=body, multitask_strategy="enqueue")
        run_ids.append(run["run_id"])
    for run_id in run_ids:
        await clients[1].runs.join(tid, run_id)
    steps = (await clients[0].threads.get_state(tid))["values"]["steps"]
    assert steps == [s for i in range(6) for s in (f"r{i}", "work", "auto")]
    for run_id in run_ids:
        assert (await clients[0].runs.get(tid, run_id))["status"] == "success"


async def test_kill_9_of_one_process_the_other_resumes(postgres_url: str, tmp_path: Path) -> None:
    url = fresh_database(postgres_url, "ap_queue_")
    env = _env(url, AGENTIC_RUN_LEASE_S="1.5")
    with ServerProcess(tmp_path / "a", env) as a, ServerProcess(tmp_path / "b", env) as b:
        ca, cb = get_client(url=a.url, api_key=a.api_key), get_client(url=b.url, api_key=b.api_key)
        try:
            tid = (await cb.threads.create())["thread_id"]
            pid, run_id = 0, ""
            stream = cb.runs.stream(tid, "agent", input={"ticks": 60, "delay": 0.05}, stream_mode="custom")
            async for part in stream:
                if part.event == "metadata":
                    run_id = part.data["run_id"]
                if part.event == "custom" and part.data["tick"] == 5:  # its first ticks are stored
                    pid = int(part.data["pid"])
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(0.2)
            victim, survivor = (a, b) if a.pid == pid else (b, a)
            client = cb if survivor is b else ca
            owner = _worker_ids(url, [run_id])[run_id]
            victim.kill()
            took = await _status(client, tid, run_id, "success", within=30)
            assert took < 15
            assert _worker_ids(url, [run_id])[run_id] != owner
            parts = [p async for p in client.runs.join_stream(tid, run_id, last_event_id="0")]
            ticks = [p.data for p in parts if p.event == "custom"]
            assert {t["pid"] for t in ticks} == {victim.pid, survivor.pid}
            assert [t["tick"] for t in ticks if t["pid"] == survivor.pid] == list(range(60))
            assert [p.event for p in parts].count("metadata") == 2  # one per attempt
            assert (await client.runs.get(tid, run_id))["status"] == "success"
        finally:
            await ca.aclose()
            await cb.aclose()
