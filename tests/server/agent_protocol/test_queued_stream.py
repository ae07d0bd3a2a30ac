"""A run that waits in the queue answers at once, and can be cancelled before it starts.

The server executes one run at a time (``AGENTIC_MAX_CONCURRENT_RUNS=1``) and a slow background
run holds that slot, so every streamed run created meanwhile waits in the queue. Its stream must
still open at once, through ``langgraph-sdk`` as a client sees it: the run id from the
``Content-Location`` header (the SDK's ``on_run_created``) and a first ``metadata`` event with the
run id, ``status: pending`` and its place in the queue, while the slow run is still running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.schema import RunCreateMetadata, StreamPart

from tests.server.agent_protocol.conftest import SAMPLE_GRAPH
from tests.server.agent_protocol.support import ServerProcess, until_running


@pytest.fixture(scope="module")
def one_slot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The sample graph on a server that executes one run at a time."""
    env = {
        "AGENTIC_GRAPH_REF": SAMPLE_GRAPH,
        "AGENTIC_MAX_CONCURRENT_RUNS": "1",
        # The worker looks for cancel requests of its runs often: a cancel that races a run's
        # start (test_cancels_racing_the_start_of_queued_runs) is then the common case, not a rare one.
        "AGENTIC_CANCEL_POLL_S": "0.001",
        "AGENTIC_RATE_LIMIT_PER_MINUTE": "0",
    }
    with ServerProcess(tmp_path_factory.mktemp("ap-one-slot"), env) as server:
        yield server


@pytest.fixture
async def sdk(one_slot_server: ServerProcess) -> AsyncIterator[LangGraphClient]:
    c = get_client(url=one_slot_server.url, api_key=one_slot_server.api_key)
    try:
        yield c
    finally:
        await c.aclose()


async def _occupy_the_slot(sdk: LangGraphClient, ticks: int = 200, delay: float = 0.1) -> tuple[str, str]:
    """Start a background run (~20 s by default); return (thread id, run id) once it runs."""
    thread = await sdk.threads.create()
    run = await sdk.runs.create(thread["thread_id"], "agent", input={"ticks": ticks, "delay": delay})
    await until_running(sdk, thread["thread_id"], run["run_id"])
    return thread["thread_id"], run["run_id"]


async def _rest(stream: AsyncIterator[StreamPart]) -> list[StreamPart]:
    return [part async for part in stream]


async def test_a_queued_stream_opens_with_its_place_then_runs_or_is_cancelled(sdk: LangGraphClient) -> None:
    busy_thread, busy_run = await _occupy_the_slot(sdk)
    created: list[RunCreateMetadata] = []
    streams: list[AsyncIterator[StreamPart]] = []
    firsts: list[StreamPart] = []
    threads: list[str] = []
    for _ in range(2):
        thread_id = (await sdk.threads.create())["thread_id"]
        stream = sdk.runs.stream(
            thread_id,
            "agent",
            input={"ticks": 2},
            stream_mode=["custom", "values"],
            on_run_created=created.append,
        ).__aiter__()
        firsts.append(await stream.__anext__())
        streams.append(stream)
        threads.append(thread_id)

    # Both answered while the slot is still taken: they were queued, and said where.
    assert (await sdk.runs.get(busy_thread, busy_run))["status"] == "running"
    run_ids = [c["run_id"] for c in created]
    assert [c["thread_id"] for c in created] == threads
    for position, (first, run_id) in enumerate(zip(firsts, run_ids, strict=True)):
        assert first.event == "metadata"
        assert first.data == {"run_id": run_id, "status": "pending", "queue_position": position}
        assert (await sdk.runs.get(threads[position], run_id))["status"] == "pending"

    # The client cancels the second while it waits: its stream ends, it never started.
    await sdk.runs.cancel(threads[1], run_ids[1])
    second = await asyncio.wait_for(_rest(streams[1]), 30)
    assert not any(p.event == "metadata" for p in second)
    assert (await sdk.runs.get(threads[1], run_ids[1]))["status"] == "interrupted"

    # Freeing the slot starts the first: the usual metadata event (with the attempt), then its events.
    await sdk.runs.cancel(busy_thread, busy_run, wait=True)
    first_rest = await asyncio.wait_for(_rest(streams[0]), 30)
    assert first_rest[0].event == "metadata"
    assert first_rest[0].data == {"run_id": run_ids[0], "attempt": 1}
    assert [p.data["tick"] for p in first_rest if p.event == "custom"] == [0, 1]
    assert (await sdk.runs.get(threads[0], run_ids[0]))["status"] == "success"


async def test_the_raw_stream_of_a_queued_run(one_slot_server: ServerProcess, sdk: LangGraphClient) -> None:
    """Headers first (run id in Content-Location, as the LangGraph server sends), then the event."""
    busy_thread, busy_run = await _occupy_the_slot(sdk)
    thread_id = (await sdk.threads.create())["thread_id"]
    body: dict[str, Any] = {"assistant_id": "agent", "input": {"ticks": 1}, "on_disconnect": "cancel"}
    async with (
        httpx.AsyncClient(base_url=one_slot_server.url, headers=one_slot_server.headers, timeout=30) as http,
        http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response,
    ):
        assert response.status_code == 200
        location = response.headers["content-location"]
        run_id = Path(location).name
        assert location == f"/threads/{thread_id}/runs/{run_id}"
        chunks = response.aiter_bytes()
        first = b""
        while b"\r\n\r\n" not in first:
            first += await chunks.__anext__()
        frame = first.split(b"\r\n\r\n", 1)[0].decode()
        assert frame.startswith("event: metadata\r\ndata: ")
        assert f'"run_id":"{run_id}"' in frame and '"queue_position":0' in frame
        assert "id: " not in frame  # not one of the run's numbered events: Last-Event-ID is untouched
    # Leaving the stream with on_disconnect="cancel" cancels the queued run.
    deadline = time.monotonic() + 30
    while (await sdk.runs.get(thread_id, run_id))["status"] != "interrupted":
        assert time.monotonic() < deadline, "the queued run was not cancelled when its client left"
        await asyncio.sleep(0.05)
    await sdk.runs.cancel(busy_thread, busy_run, wait=True)


async def test_a_queued_stateless_stream_says_its_place_then_runs_and_drops_its_thread(
    sdk: LangGraphClient,
) -> None:
    """A stateless run waits in the same queue: same opening event, then its run, then no thread."""
    busy_thread, busy_run = await _occupy_the_slot(sdk)
    created: list[RunCreateMetadata] = []
    stream = sdk.runs.stream(
        None, "agent", input={"ticks": 1}, stream_mode="custom", on_run_created=created.append
    ).__aiter__()
    first = await stream.__anext__()
    run_id, thread_id = created[0]["run_id"], created[0]["thread_id"]
    assert thread_id is not None
    assert first.event == "metadata"
    assert first.data == {"run_id": run_id, "status": "pending", "queue_position": 0}
    assert (await sdk.runs.get(thread_id, run_id))["status"] == "pending"
    await sdk.runs.cancel(busy_thread, busy_run, wait=True)
    rest = await asyncio.wait_for(_rest(stream), 30)
    assert rest[0].data == {"run_id": run_id, "attempt": 1}
    assert [p.data["tick"] for p in rest if p.event == "custom"] == [0]
    threads = await sdk.threads.search(ids=[thread_id])
    assert threads == []  # on_completion="delete": the run's own thread went when it ended


async def test_cancels_racing_the_start_of_queued_runs(sdk: LangGraphClient) -> None:
    """A queued run cancelled while it waits ends, and the slot serves the next runs, round after round.

    The cancel claims the run just to end it; the worker's own look for cancel requests then finds
    it too, at the moment its task is created. A task cancelled before its first step never ran its
    body: the stream never ended and the run's slot stayed taken, so the server executed nothing
    more (what this file's first test once hit in CI).
    """
    for round_ in range(20):
        busy_thread, busy_run = await _occupy_the_slot(sdk, ticks=40, delay=0.05)
        created: list[RunCreateMetadata] = []
        streams: list[AsyncIterator[StreamPart]] = []
        threads: list[str] = []
        for _ in range(2):
            thread_id = (await sdk.threads.create())["thread_id"]
            stream = sdk.runs.stream(
                thread_id, "agent", input={"ticks": 1}, stream_mode="custom", on_run_created=created.append
            ).__aiter__()
            assert (await stream.__anext__()).data["status"] == "pending"
            streams.append(stream)
            threads.append(thread_id)
        await sdk.runs.cancel(threads[0], created[0]["run_id"])
        try:
            await asyncio.wait_for(_rest(streams[0]), 10)
        except TimeoutError:
            pytest.fail(f"round {round_}: the cancelled queued run's stream did not end")
        assert (await sdk.runs.get(threads[0], created[0]["run_id"]))["status"] == "interrupted"
        await sdk.runs.cancel(busy_thread, busy_run, wait=True)
        rest = await asyncio.wait_for(_rest(streams[1]), 20)  # the slot is free: the other one runs
        assert [p.data["tick"] for p in rest if p.event == "custom"] == [0], f"round {round_}"
