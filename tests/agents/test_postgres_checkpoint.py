"""Group commit of Postgres checkpoints, checked against LangGraph's own saver on the real Postgres.

What must hold: a run with ``async`` durability stores exactly what ``AsyncPostgresSaver`` stores
once flushed; nothing is read, listed or deleted past queued rows; other durabilities and direct
puts are committed before they return; a batch stores what its calls one after another would; a
bad row fails its own thread only.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph._internal._constants import CONFIG_KEY_DURABILITY
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from agents.checkpoint import flush_checkpoints, open_postgres_checkpointer
from agents.postgres_checkpoint import GroupCommitPostgresSaver
from workspace.engine import libpq_url

ASYNC = CONFIG_KEY_DURABILITY  # LangGraph's key for a run's durability in its configs


class State(TypedDict):
    items: Annotated[list[str], operator.add]
    note: str


def _graph() -> StateGraph[State]:
    """Several steps, two tasks in one step (two writes calls) and a Send (a task's own writes)."""

    def fan_out(state: State) -> list[Send]:
        return [Send("worker", {"items": [f"job {n}"], "note": ""}) for n in range(2)]

    graph = StateGraph(State)
    graph.add_node("first", lambda s: {"items": ["first"], "note": "started"})
    graph.add_node("left", lambda s: {"items": ["left"]})
    graph.add_node("right", lambda s: {"items": ["right"]})
    graph.add_node("worker", lambda s: {"items": [f"done {s['items'][0]}"]})
    graph.add_node("last", lambda s: {"note": f"{len(s['items'])} items"})
    graph.add_edge(START, "first")
    graph.add_edge("first", "left")
    graph.add_edge("first", "right")
    graph.add_conditional_edges("left", fan_out)
    graph.add_edge("worker", "last")
    graph.add_edge("right", "last")
    graph.add_edge("last", END)
    return graph


@pytest.fixture
async def reader(postgres_url: str) -> AsyncIterator[AsyncPostgresSaver]:
    """LangGraph's own saver on a connection of its own: what another process would read."""
    conn = await AsyncConnection.connect(
        libpq_url(postgres_url), autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    async with conn:
        saver = AsyncPostgresSaver(conn)
        await saver.setup()
        yield saver


@pytest.fixture
async def saver(postgres_url: str) -> AsyncIterator[GroupCommitPostgresSaver]:
    """The group-commit saver with a window long enough that only flushes commit."""
    async with open_postgres_checkpointer(postgres_url, flush_after_s=60) as opened:
        yield opened


def _config(thread_id: str, **configurable: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", **configurable}}


async def _history(saver: AsyncPostgresSaver, thread_id: str) -> list[CheckpointTuple]:
    return [item async for item in saver.alist(_config(thread_id))]


def _comparable(item: CheckpointTuple) -> tuple[Any, ...]:
    """A checkpoint without its ids, times and version numbers (they differ between two runs)."""
    checkpoint = item.checkpoint
    metadata = {k: v for k, v in item.metadata.items() if k not in ("thread_id", "run_id")}
    writes = sorted((channel, repr(value)) for _, channel, value in item.pending_writes or [])
    return (checkpoint["channel_values"], sorted(checkpoint["channel_versions"]), metadata, writes)


async def test_an_async_run_stores_what_langgraphs_saver_stores(
    saver: GroupCommitPostgresSaver, reader: AsyncPostgresSaver
) -> None:
    ours, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    for checkpointer, thread_id in ((saver, ours), (reader, theirs)):
        graph = _graph().compile(checkpointer=checkpointer)
        for turn in ("one", "two"):  # the second turn starts from the first one's checkpoint
            out = await graph.ainvoke({"items": [turn], "note": ""}, _config(thread_id), durability="async")
            await flush_checkpoints(checkpointer, thread_id)
        assert out["note"] == "12 items"

    ours_stored, theirs_stored = await _history(reader, ours), await _history(reader, theirs)
    assert len(ours_stored) == len(theirs_stored) >= 10
    assert [_comparable(i) for i in ours_stored] == [_comparable(i) for i in theirs_stored]
    assert [i.parent_config is None for i in ours_stored] == [i.parent_config is None for i in theirs_stored]
    assert ours_stored[0].checkpoint["channel_values"]["note"] == "12 items"
    assert saver.batches == 2  # two turns, each one statement for all its puts and writes


async def test_queued_rows_are_committed_by_a_flush_and_before_any_read(
    saver: GroupCommitPostgresSaver, reader: AsyncPostgresSaver
) -> None:
    thread_id = uuid.uuid4().hex
    graph = _graph().compile(checkpointer=saver)
    await graph.ainvoke({"items": ["x"], "note": ""}, _config(thread_id), durability="async")
    assert await reader.aget_tuple(_config(thread_id)) is None  # queued, not yet committed

    state = await graph.aget_state(_config(thread_id))  # a read through the saver commits first
    assert state.values["note"] == "6 items"
    stored = await reader.aget_tuple(_config(thread_id))
    assert stored is not None and stored.checkpoint["channel_values"]["note"] == "6 items"

    await graph.ainvoke({"items": ["y"], "note": ""}, _config(thread_id), durability="async")
    await saver.aflush(thread_id)
    assert len(await _history(reader, thread_id)) == len(await _history(saver, thread_id)) == 12


@pytest.mark.parametrize("durability", ["sync", "exit"])
async def test_other_durabilities_and_direct_puts_commit_before_returning(
    saver: GroupCommitPostgresSaver, reader: AsyncPostgresSaver, durability: Any
) -> None:
    thread_id = uuid.uuid4().hex
    graph = _graph().compile(checkpointer=saver)
    await graph.ainvoke({"items": ["x"], "note": ""}, _config(thread_id), durability=durability)
    stored = await reader.aget_tuple(_config(thread_id))
    assert stored is not None and stored.checkpoint["channel_values"]["note"] == "6 items"

    await graph.aupdate_state(_config(thread_id), {"note": "edited"})  # as the threads API does
    stored = await reader.aget_tuple(_config(thread_id))
    assert stored is not None and stored.checkpoint["channel_values"]["note"] == "edited"


async def test_a_batch_stores_what_its_calls_one_after_another_would(
    saver: GroupCommitPostgresSaver, reader: AsyncPostgresSaver
) -> None:
    thread_id = uuid.uuid4().hex
    queued = _config(thread_id, **{ASYNC: "async"})
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"items": ["a"], "note": "first"}
    checkpoint["channel_versions"] = {"items": "1", "note": "1"}
    versions = {"items": "1", "note": "1"}
    saved = await saver.aput(queued, checkpoint, {"step": 1}, versions)
    # The same checkpoint again (LangGraph re-puts a run's last one on exit): the last one stays.
    again = {**checkpoint, "channel_values": {"items": ["changed"], "note": "second"}}
    await saver.aput(queued, again, {"step": 2}, versions)
    at = {"configurable": {**saved["configurable"], ASYNC: "async"}}
    await saver.aput_writes(at, [("items", ["plain 1"])], "task")  # inserts: the first stays
    await saver.aput_writes(at, [("items", ["plain 2"])], "task")
    await saver.aput_writes(at, [("__error__", "first error")], "task")  # upserts: the last stays
    await saver.aput_writes(at, [("__error__", "second error")], "task")
    assert await reader.aget_tuple(_config(thread_id)) is None

    batches = saver.batches
    await saver.aflush(thread_id)
    assert saver.batches == batches + 1
    stored = await reader.aget_tuple(_config(thread_id))
    assert stored is not None
    # The blob of version "1" was written first with ["a"]: blobs are never overwritten, as in LangGraph.
    assert stored.checkpoint["channel_values"] == {"items": ["a"], "note": "second"}
    assert stored.metadata["step"] == 2
    assert sorted((c, v) for _, c, v in stored.pending_writes or []) == [
        ("__error__", "second error"),
        ("items", ["plain 1"]),
    ]


async def test_a_row_that_fails_fails_its_own_thread_only(
    saver: GroupCommitPostgresSaver, reader: AsyncPostgresSaver
) -> None:
    good, bad = uuid.uuid4().hex, "bad\x00" + uuid.uuid4().hex  # text columns refuse NUL
    checkpoint = empty_checkpoint()
    for thread_id in (good, bad):
        await saver.aput(_config(thread_id, **{ASYNC: "async"}), checkpoint, {"step": 0}, {})
    with pytest.raises(Exception, match="0x00"):
        await flush_checkpoints(saver, bad)
    await flush_checkpoints(saver, good)  # its rows were stored, and it has no error to raise
    stored = await reader.aget_tuple(_config(good))
    assert stored is not None and stored.checkpoint["id"] == checkpoint["id"]
    await flush_checkpoints(saver, bad)  # an error is raised once


async def test_a_delete_is_not_undone_by_rows_queued_before_it(
    saver: GroupCommitPostgresSaver, reader: AsyncPostgresSaver
) -> None:
    thread_id = uuid.uuid4().hex
    graph = _graph().compile(checkpointer=saver)
    await graph.ainvoke({"items": ["x"], "note": ""}, _config(thread_id), durability="async")
    await saver.adelete_thread(thread_id)
    await saver.aflush()
    assert await _history(reader, thread_id) == []


async def test_a_flush_waits_for_rows_queued_before_it_not_after(saver: GroupCommitPostgresSaver) -> None:
    """Under steady load (rows queued while every batch is written) a run's flush still returns."""
    write = saver._write
    others = uuid.uuid4().hex

    async def write_while_others_queue(puts: Any) -> None:
        if saver.batches < 5:  # another run queues a checkpoint while each batch is written
            checkpoint = empty_checkpoint()
            await saver.aput(_config(others, **{ASYNC: "async"}), checkpoint, {"step": 0}, {})
        await write(puts)

    saver._write = write_while_others_queue  # type: ignore[method-assign]
    mine = uuid.uuid4().hex
    await saver.aput(_config(mine, **{ASYNC: "async"}), empty_checkpoint(), {"step": 0}, {})
    await saver.aflush(mine)
    assert saver.batches <= 2  # its own batch and at most the one written when it asked
    for _ in range(6):  # each flush waits for what was queued when it was called: the rest follows
        await saver.aflush()
    assert saver.batches == 6
