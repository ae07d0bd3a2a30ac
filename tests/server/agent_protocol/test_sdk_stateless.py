"""Stateless runs, and thread copy and prune, through ``langgraph-sdk`` (SQLite and Postgres).

A stateless run gets a thread of its own, deleted when the run ends (the default) or kept; it uses
the same queue, stream format and cancel as a thread's run. Copy makes a new thread with the same
history; prune deletes threads or their older checkpoints. Another tenant's threads are untouched.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

from tests.server.agent_protocol.support import ServerProcess

_LOCATION = re.compile(r"/threads/(?P<thread>[^/]+)/runs/(?P<run>[^/]+)$")


async def _raw(server: ServerProcess, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=60) as http:
        return await http.request(method, path, json=body)


async def _gone(client: LangGraphClient, thread_id: str) -> bool:
    try:
        await client.threads.get(thread_id)
    except NotFoundError:
        return True
    return False


async def test_wait_returns_values_and_drops_its_thread(
    sample_server: ServerProcess, client: LangGraphClient
) -> None:
    result = await client.runs.wait(None, "agent", input={"ticks": 1})
    assert result == {"steps": ["work", "auto"], "ticks": 1}
    r = await _raw(sample_server, "POST", "/runs/wait", {"assistant_id": "agent", "input": {"ticks": 0}})
    assert r.status_code == 200 and r.json()["steps"] == ["work", "auto"]
    where = _LOCATION.search(r.headers["Content-Location"])
    assert where is not None
    assert await _gone(client, where["thread"])  # deleted when the run ended
    assert await client.threads.search(metadata={"thread_id": where["thread"]}) == []


async def test_keep_leaves_an_ordinary_thread(client: LangGraphClient) -> None:
    created: list[Any] = []
    result = await client.runs.wait(
        None, "agent", input={"ticks": 0}, on_completion="keep", on_run_created=created.append
    )
    assert result["steps"] == ["work", "auto"]
    thread_id = created[0]["thread_id"]
    thread = await client.threads.get(thread_id)
    assert thread["status"] == "idle" and thread["values"]["steps"] == ["work", "auto"]
    assert thread["metadata"]["graph_id"] == "agent"
    assert len(await client.threads.get_history(thread_id)) >= 2
    runs = await client.runs.list(thread_id)
    assert [r["status"] for r in runs] == ["success"]


async def test_stream_has_the_thread_runs_format(client: LangGraphClient) -> None:
    parts = [
        p
        async for p in client.runs.stream(
            None, "agent", input={"ticks": 2}, stream_mode=["custom", "values", "updates"]
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and "run_id" in parts[0].data
    assert [p.data["tick"] for p in parts if p.event == "custom"] == [0, 1]
    assert parts[-1].event == "values" and parts[-1].data["steps"] == ["work", "auto"]
    assert {"updates", "values"} <= set(events)


async def test_background_and_batch_runs(client: LangGraphClient) -> None:
    run = await client.runs.create(None, "agent", input={"ticks": 1}, on_completion="keep")
    assert run["status"] in ("pending", "running", "success")
    assert (await client.runs.join(run["thread_id"], run["run_id"]))["steps"] == ["work", "auto"]
    batch = await client.runs.create_batch(
        [
            {"assistant_id": "agent", "input": {"ticks": n}, "on_completion": "keep"}  # type: ignore[typeddict-item]
            for n in (1, 2)
        ]
    )
    assert len(batch) == 2 and len({r["thread_id"] for r in batch}) == 2
    for r in batch:
        assert (await client.runs.join(r["thread_id"], r["run_id"]))["ticks"] in (1, 2)


async def test_cancel_works_as_on_thread_runs(client: LangGraphClient) -> None:
    run = await client.runs.create(None, "agent", input={"ticks": 100, "delay": 0.05})
    await client.runs.cancel(run["thread_id"], run["run_id"], wait=True)
    assert await _gone(client, run["thread_id"])  # cancelled counts as ended: its thread went too


async def test_bad_stateless_runs_are_4xx_and_queue_nothing(
    sample_server: ServerProcess, client: LangGraphClient
) -> None:
    before = await client.threads.count()
    endpoint = {"model_base_url": "http://127.0.0.1:9"}
    too_many = {"max_attempts": 99}
    cases = [
        ("/runs", {"assistant_id": "agent", "command": {"resume": 1}}, 422, "not a command"),
        ("/runs/wait", {"assistant_id": "nope", "input": {}}, 404, "assistant 'nope' not found"),
        ("/runs/stream", {"assistant_id": "agent", "context": {"tier": "heavy"}}, 422, "light, medium"),
        ("/runs", {"assistant_id": "agent", "context": endpoint}, 422, "operator"),
        (
            "/runs/batch",
            [{"assistant_id": "agent", "input": {}}, {"assistant_id": "agent", "context": too_many}],
            422,
            "run 1 of the batch",
        ),
        ("/runs/batch", [{"assistant_id": "agent"}] * 101, 422, "101"),
    ]
    for path, body, status, says in cases:
        r = await _raw(sample_server, "POST", path, body)
        assert r.status_code == status, (path, r.text)
        assert says in r.text, r.text
    assert await client.threads.count() == before


async def test_copy_keeps_history_and_forks(client: LangGraphClient, other_client: LangGraphClient) -> None:
    thread = await client.threads.create(metadata={"topic": "copy"})
    tid = thread["thread_id"]
    await client.runs.wait(tid, "agent", input={"ticks": 0})
    await client.runs.wait(tid, "agent", input={"ticks": 1})
    copy = await client.threads.copy(tid)
    assert copy["thread_id"] != tid and copy["metadata"]["topic"] == "copy"
    assert copy["values"] == (await client.threads.get(tid))["values"]
    source_history = await client.threads.get_history(tid, limit=100)
    copy_history = await client.threads.get_history(copy["thread_id"], limit=100)
    assert [s["checkpoint"]["checkpoint_id"] for s in copy_history] == [
        s["checkpoint"]["checkpoint_id"] for s in source_history
    ]
    assert [s["values"] for s in copy_history] == [s["values"] for s in source_history]
    await client.runs.wait(copy["thread_id"], "agent", input={"ticks": 0})  # the copy goes on alone
    assert len((await client.threads.get_state(copy["thread_id"]))["values"]["steps"]) == 6
    assert len((await client.threads.get_state(tid))["values"]["steps"]) == 4
    try:
        await other_client.threads.copy(tid)
        raise AssertionError("another tenant copied the thread")
    except NotFoundError:
        pass


async def test_prune_keep_latest_and_delete(
    sample_server: ServerProcess, client: LangGraphClient, other_client: LangGraphClient
) -> None:
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "agent", input={"ticks": 0})
    await client.runs.wait(tid, "agent", input={"ticks": 0})
    state = await client.threads.get_state(tid)
    assert len(await client.threads.get_history(tid, limit=100)) > 1
    assert await client.threads.prune([tid], strategy="keep_latest") == {"pruned_count": 1}
    history = await client.threads.get_history(tid, limit=100)
    assert len(history) == 1 and history[0]["values"] == state["values"]
    await client.runs.wait(tid, "agent", input={"ticks": 0})  # the thread goes on from its state
    assert len((await client.threads.get_state(tid))["values"]["steps"]) == 6

    mine = [(await client.threads.create())["thread_id"] for _ in range(2)]
    theirs = (await other_client.threads.create())["thread_id"]
    pruned = await client.threads.prune([*mine, theirs, "no-such-thread"])
    assert pruned == {"pruned_count": 2}
    assert all([await _gone(client, t) for t in mine])
    assert (await other_client.threads.get(theirs))["thread_id"] == theirs  # not this tenant's: skipped

    r = await _raw(sample_server, "POST", "/threads/prune", {"thread_ids": [tid], "strategy": "all"})
    assert r.status_code == 422 and "strategy" in r.text
    r = await _raw(sample_server, "POST", "/threads/prune", {"thread_ids": tid})
    assert r.status_code == 422
    assert (await client.threads.get(tid))["thread_id"] == tid
