"""Checkpoints on SQLite and the real Postgres: resume after a restart, and time travel with files."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.types import Command

from agents.checkpoint import open_checkpointer
from agents.context import Context
from agents.graph import build_graph
from tests.agents.scripts import fenced, route
from tests.agents.test_approval import drive
from tests.support.scripted_openai import CODE, ROUTER, Reply, ScriptedOpenAI
from workspace.sql import SqlVersionStore


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """(database_url, data_dir) for each checkpointer backend."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url")), tmp_path
    return "", tmp_path


async def test_interrupted_run_resumes_after_restart(
    backend: tuple[str, Path], llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    url, data_dir = backend
    llm.add(
        Reply(route("code", "Print 7."), match=ROUTER),
        Reply(fenced("print(7)\n"), match=CODE),
    )
    ctx = make_context(require_approval=True, generate_tests=False)
    config: dict[str, Any] = {"configurable": {"thread_id": uuid.uuid4().hex}}
    async with open_checkpointer(url, data_dir=data_dir) as saver:
        graph = build_graph().compile(checkpointer=saver)
        paused, events = await drive(graph, {"messages": [HumanMessage("print 7 in python")]}, config, ctx)
        assert paused["interrupt"]["code"] == "print(7)\n" and events == []
    async with open_checkpointer(url, data_dir=data_dir) as saver:  # a new process, same database
        graph = build_graph().compile(checkpointer=saver)
        state = await graph.aget_state(config)
        assert state.next == ("code_agent",)
        done, events = await drive(graph, Command(resume="approve"), config, ctx)
    assert [e["passed"] for e in events] == [True]
    assert done["values"]["messages"][-1].content.startswith("Done: main.py ran successfully")
    assert len(llm.requests_matching(CODE)) == 1


async def test_fork_from_earlier_checkpoint_sees_older_files(
    backend: tuple[str, Path],
    llm: ScriptedOpenAI,
    make_context: Callable[..., Context],
    store: SqlVersionStore,
) -> None:
    url, data_dir = backend
    ctx = make_context(generate_tests=False)
    config: dict[str, Any] = {"configurable": {"thread_id": uuid.uuid4().hex}}
    v1, v2, v3 = "print('v1')\n", "print('v2')\n", "print('v3')\n"
    async with open_checkpointer(url, data_dir=data_dir) as saver:
        graph = build_graph().compile(checkpointer=saver)
        for code in (v1, v2):
            llm.add(
                Reply(route("code", "change the greeting"), match=ROUTER),
                Reply(fenced(code), match=CODE),
            )
            await graph.ainvoke(
                {"messages": [HumanMessage("python greeting, new version")]}, config, context=ctx
            )
        latest = await graph.aget_state(config)
        workspace_id = latest.values["workspace_id"]
        history = await store.history(workspace_id, "main.py")
        assert [v.content for v in history] == [v1, v2]
        assert latest.values["files"]["main.py"] == history[1].id

        # The checkpoint that ended the first turn pins version 1.
        snapshots = [s async for s in graph.aget_state_history(config)]
        first_turn = next(
            s for s in snapshots if not s.next and s.values["files"].get("main.py") == history[0].id
        )
        forked_state = await graph.aget_state(first_turn.config)
        assert forked_state.values["files"]["main.py"] == history[0].id

        llm.reset()
        llm.add(
            Reply(route("code", "change the greeting again"), match=ROUTER),
            Reply(fenced(v3), match=CODE),
        )
        forked = await graph.ainvoke(
            {"messages": [HumanMessage("another version please")]}, first_turn.config, context=ctx
        )
        prompt = llm.requests_matching(CODE)[0]["messages"][-1]["content"]
        assert "print('v1')" in prompt and "print('v2')" not in prompt
        assert forked["files"]["main.py"] != history[1].id
        # The original branch still ends at version 2; the fork wrote version 3 from version 1.
        assert (await graph.aget_state(latest.config)).values["files"]["main.py"] == history[1].id
        assert (await store.read(workspace_id, "main.py", forked["files"]["main.py"])).content == v3


async def test_sqlite_checkpoints_wait_for_a_busy_database_off_the_event_loop(tmp_path: Path) -> None:
    import asyncio
    import sqlite3
    import time

    from langgraph.checkpoint.base import empty_checkpoint

    from agents.checkpoint import InlineSqliteSaver, open_sqlite_checkpointer

    def hold_write_lock(seconds: float) -> None:  # another process's writer, as SQLite sees it
        conn = sqlite3.connect(str(tmp_path / "c.db"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    async with open_sqlite_checkpointer(tmp_path / "c.db") as saver:
        assert isinstance(saver, InlineSqliteSaver)
        first = await saver.aput(config, empty_checkpoint(), {"step": 0}, {})  # free: on the loop
        holder = asyncio.ensure_future(asyncio.to_thread(hold_write_lock, 0.5))
        await asyncio.sleep(0.1)
        checkpoint = empty_checkpoint()
        put = asyncio.ensure_future(saver.aput(first, checkpoint, {"step": 1}, {}))
        ticks = 0
        while not put.done():
            await asyncio.sleep(0.01)
            ticks += 1
        saved = await put
        await holder
        assert ticks >= 10, "the event loop stood still while the database was busy"
        assert saver.offloaded == 1
        latest = await saver.aget_tuple(config)
        assert latest is not None and latest.config == saved
        assert latest.checkpoint["id"] == checkpoint["id"]
