"""langgraph-sdk against our server: assistants, threads, runs in each stream mode, join, cancel,
disconnect, multitask strategies, interrupts and resume, history and time travel, slow clients.

The served graph is ``sample_graphs.graph`` (no model), so every expected event is known.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.server.agent_protocol.support import ServerProcess

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
ASSISTANT_ID = str(uuid.uuid5(NAMESPACE_GRAPH, "agent"))


async def _wait_status(
    client: LangGraphClient, thread_id: str, run_id: str, want: str, within: float
) -> float:
    """Poll the run until it has status ``want``; return how long that took."""
    start = time.monotonic()
    while True:
        run = await client.runs.get(thread_id, run_id)
        if run["status"] == want:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"run still {run['status']} after {within}s"
        await asyncio.sleep(0.05)


async def test_info_and_assistant(client: LangGraphClient) -> None:
    info = await client.http.get("/info")
    assert info["flags"]["assistants"] is True
    found = await client.assistants.search(metadata={"created_by": "system"})  # tenants' own aside
    assert [a["assistant_id"] for a in found] == [ASSISTANT_ID]
    assert (await client.assistants.get("agent"))["assistant_id"] == ASSISTANT_ID
    graph = await client.assistants.get_graph(ASSISTANT_ID)
    assert {n["id"] for n in graph["nodes"]} >= {"work", "approval"}
    schemas = await client.assistants.get_schemas(ASSISTANT_ID)
    assert "ticks" in schemas["input_schema"]["properties"]
    with pytest.raises(NotFoundError):
        await client.assistants.get("no-such-graph")


async def test_thread_lifecycle(client: LangGraphClient) -> None:
    tag = uuid.uuid4().hex
    thread = await client.threads.create(metadata={"tag": tag})
    tid = thread["thread_id"]
    assert thread["status"] == "idle"
    assert (await client.threads.get(tid))["metadata"]["tag"] == tag
    assert [t["thread_id"] for t in await client.threads.search(metadata={"tag": tag})] == [tid]
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=tid)
    same = await client.threads.create(thread_id=tid, if_exists="do_nothing")
    assert same["thread_id"] == tid
    await client.threads.update(tid, metadata={"more": 1})
    meta = {"graph_id": "agent", "assistant_id": ASSISTANT_ID, "tag": tag, "more": 1}
    assert (await client.threads.get(tid))["metadata"] == meta
    # agent-chat-ui lists threads by either key
    by_assistant = await client.threads.search(metadata={"assistant_id": ASSISTANT_ID, "tag": tag})
    assert [t["thread_id"] for t in by_assistant] == [tid]
    await client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await client.threads.get(tid)


async def test_stream_values_updates_custom(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    parts = [
        p
        async for p in client.runs.stream(
            tid, "agent", input={"ticks": 3}, stream_mode=["values", "updates", "custom"]
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata"
    run_id = parts[0].data["run_id"]
    assert [p.data["tick"] for p in parts if p.event == "custom"] == [0, 1, 2]
    assert {"work": {"steps": ["work"]}} in [p.data for p in parts if p.event == "updates"]
    assert parts[-1].event == "values" and parts[-1].data["steps"] == ["work", "auto"]
    run = await client.runs.get(tid, run_id)
    assert run["status"] == "success"
    thread = await client.threads.get(tid)
    assert thread["status"] == "idle" and thread["values"]["steps"] == ["work", "auto"]


async def test_stream_single_mode_filters(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    parts = [p async for p in client.runs.stream(tid, "agent", input={"ticks": 2}, stream_mode="custom")]
    assert [p.event for p in parts] == ["metadata", "custom", "custom"]


async def test_background_run_join_and_list(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, ASSISTANT_ID, input={"ticks": 2, "delay": 0.05})
    assert run["status"] in ("pending", "running")
    result = await client.runs.join(tid, run["run_id"])
    assert result["steps"] == ["work", "auto"]
    runs = await client.runs.list(tid)
    assert [r["run_id"] for r in runs] == [run["run_id"]] and runs[0]["status"] == "success"
    waited = await client.runs.wait(tid, "agent", input={"ticks": 1})
    assert waited["steps"] == ["work", "auto", "work", "auto"]


async def test_rejoin_running_stream(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(
        tid, "agent", input={"ticks": 6, "delay": 0.1}, stream_mode=["custom", "values"]
    )
    await asyncio.sleep(0.15)
    parts = [p async for p in client.runs.join_stream(tid, run["run_id"])]
    ticks = [p.data["tick"] for p in parts if p.event == "custom"]
    assert ticks and ticks[-1] == 5 and ticks == sorted(ticks)
    assert parts[-1].event == "values"
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
    # Replay from an event id: everything after it comes again.
    again = [p async for p in client.runs.join_stream(tid, run["run_id"], last_event_id="1")]
    assert [p.data["tick"] for p in again if p.event == "custom"] == [0, 1, 2, 3, 4, 5]


async def test_cancel_stops_run_within_a_second(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "agent", input={"ticks": 200, "delay": 0.05})
    await _wait_status(client, tid, run["run_id"], "running", within=5)
    start = time.monotonic()
    await client.runs.cancel(tid, run["run_id"], wait=True)
    assert time.monotonic() - start < 1.0
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_disconnect_cancels_when_asked(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    run_id = None
    stream = client.runs.stream(
        tid, "agent", input={"ticks": 200, "delay": 0.05}, stream_mode="custom", on_disconnect="cancel"
    )
    async for part in stream:
        if part.event == "metadata":
            run_id = part.data["run_id"]
        if part.event == "custom":
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert run_id is not None
    took = await _wait_status(client, tid, run_id, "interrupted", within=3)
    assert took < 1.0


async def test_disconnect_continues_by_default(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    stream = client.runs.stream(tid, "agent", input={"ticks": 5, "delay": 0.05}, stream_mode="custom")
    run_id = None
    async for part in stream:
        run_id = run_id or part.data["run_id"]
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert run_id is not None
    await _wait_status(client, tid, run_id, "success", within=5)


async def test_multitask_reject_and_enqueue(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.create(tid, "agent", input={"ticks": 10, "delay": 0.05})
    with pytest.raises(ConflictError):
        await client.runs.create(tid, "agent", input={"ticks": 1}, multitask_strategy="reject")
    second = await client.runs.create(tid, "agent", input={"ticks": 1}, multitask_strategy="enqueue")
    assert (await client.runs.get(tid, second["run_id"]))["status"] == "pending"
    await client.runs.join(tid, second["run_id"])
    first_run = await client.runs.get(tid, first["run_id"])
    second_run = await client.runs.get(tid, second["run_id"])
    assert first_run["status"] == second_run["status"] == "success"
    assert first_run["updated_at"] <= second_run["updated_at"]


async def test_interrupt_and_resume(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    parts = [p async for p in client.runs.stream(tid, "agent", input={"ticks": 1, "approve": True})]
    last = parts[-1]
    assert last.event == "values" and last.data["__interrupt__"][0]["value"] == {"question": "run it?"}
    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted"
    assert [i["value"] for items in thread["interrupts"].values() for i in items] == [{"question": "run it?"}]
    state = await client.threads.get_state(tid)
    assert state["next"] == ["approval"] and state["interrupts"]
    resumed = await client.runs.wait(tid, "agent", command={"resume": "yes"})
    assert resumed["steps"] == ["work", "approved:yes"]
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_history_and_time_travel(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "agent", input={"ticks": 1})
    history = await client.threads.get_history(tid, limit=20)
    assert len(history) >= 3
    assert history[0]["values"]["steps"] == ["work", "auto"]
    # The checkpoint right before "approval" ran: its next node is approval.
    before_approval = next(h for h in history if h["next"] == ["approval"])
    assert before_approval["values"]["steps"] == ["work"]
    at = await client.threads.get_state(tid, checkpoint_id=before_approval["checkpoint"]["checkpoint_id"])
    assert at["values"]["steps"] == ["work"]
    # Fork from it with different input to the approval node: the thread continues from there.
    await client.threads.update_state(
        tid, {"approve": True}, checkpoint_id=before_approval["checkpoint"]["checkpoint_id"]
    )
    result = await client.runs.wait(tid, "agent", input=None)
    assert result["__interrupt__"]
    resumed = await client.runs.wait(tid, "agent", command={"resume": "fork"})
    assert resumed["steps"] == ["work", "approved:fork"]
    replay = await client.runs.wait(
        tid, "agent", input=None, checkpoint_id=before_approval["checkpoint"]["checkpoint_id"]
    )
    assert replay["steps"] == ["work", "auto"]


async def test_slow_client_is_resynced_and_never_blocks_the_run(
    client: LangGraphClient, sample_server: ServerProcess
) -> None:
    tid = (await client.threads.create())["thread_id"]
    body: dict[str, Any] = {
        "assistant_id": "agent",
        "input": {"ticks": 400, "pad": 20_000},
        "stream_mode": ["custom", "values"],
    }
    async with httpx.AsyncClient(
        base_url=sample_server.url, headers=sample_server.headers, timeout=60
    ) as http:
        async with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as res:
            run_id = res.headers["content-location"].rsplit("/", 1)[-1]
            # Read nothing until the run is over: the run must finish regardless of this client.
            await _wait_status(client, tid, run_id, "success", within=30)
            text = (await res.aread()).decode()
    events = [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]
    assert "notice" in events
    assert events[-1] == "values"
    assert events.count("custom") < 400


async def test_unknown_thread_and_run(client: LangGraphClient) -> None:
    with pytest.raises(NotFoundError):
        await client.runs.create(str(uuid.uuid4()), "agent", input={})
    tid = (await client.threads.create())["thread_id"]
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, str(uuid.uuid4()))
    created = await client.runs.wait(str(uuid.uuid4()), "agent", input={"ticks": 0}, if_not_exists="create")
    assert created["steps"] == ["work", "auto"]
