"""A server that seems stuck says what it waits on: threads on ``SIGUSR1``, asyncio tasks on ``SIGUSR2``.

Through a real server process, as an operator (or a failed test, see ``ServerProcess.diagnose``)
would ask: a run waiting in its graph shows up as its task driving the graph, and the graph's node
(LangGraph runs it in a task of its own) as waiting in the node's code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langgraph_sdk import get_client

from tests.server.agent_protocol.conftest import SAMPLE_GRAPH
from tests.server.agent_protocol.support import ServerProcess, until_running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("ap-stacks"), {"AGENTIC_GRAPH_REF": SAMPLE_GRAPH}) as srv:
        yield srv


async def test_a_running_server_dumps_its_threads_and_tasks(server: ServerProcess) -> None:
    sdk = get_client(url=server.url, api_key=server.api_key)
    try:
        thread = await sdk.threads.create()
        run = await sdk.runs.create(thread["thread_id"], "agent", input={"ticks": 100, "delay": 0.1})
        await until_running(sdk, thread["thread_id"], run["run_id"])

        before = len(server.log())
        dumped = await asyncio.to_thread(server.diagnose, 10_000)
        new = server.log()[before:]
        assert dumped.endswith(new.rstrip("\n")[-200:])  # what diagnose returns is the log's end

        # faulthandler: every thread, the main one (the event loop) among them
        assert "Current thread 0x" in new or "Thread 0x" in new
        assert 'File "' in new
        # asyncio: the run's task, driving its graph, and the graph's node waiting in its own task
        task = new.split(f"task run-{run['run_id']}:", 1)
        assert len(task) == 2, f"the run's task is not in the dump:\n{new[-3000:]}"
        chain = task[1].split("\ntask ", 1)[0]
        assert "in _drive" in chain, chain
        assert 'sample_graphs.py", line' in new and ", in work\n" in new
        await sdk.runs.cancel(thread["thread_id"], run["run_id"], wait=True)
    finally:
        await sdk.aclose()
