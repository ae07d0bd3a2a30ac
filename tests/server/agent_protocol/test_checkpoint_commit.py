"""A run the server reports finished has all its checkpoints committed to Postgres.

The checkpointer queues a run's checkpoints and commits them in groups; here its window is a
minute, so only the executor's flush before it records the outcome can have stored them. Read with
LangGraph's own saver on a connection of its own, as another server process would.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph_sdk import get_client
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from tests.server.agent_protocol.conftest import SAMPLE_GRAPH
from tests.server.agent_protocol.support import ServerProcess, fresh_database
from workspace.engine import libpq_url


async def test_a_finished_run_has_its_checkpoints_committed(postgres_url: str, tmp_path: Path) -> None:
    database = fresh_database(postgres_url)
    env = {
        "AGENTIC_GRAPH_REF": SAMPLE_GRAPH,
        "AGENTIC_DATABASE_URL": database,
        "AGENTIC_CHECKPOINT_FLUSH_MS": "60000",
    }
    with ServerProcess(tmp_path, env) as server:
        client = get_client(url=server.url, api_key=server.api_key)
        try:
            thread = await client.threads.create()
            config = {"configurable": {"thread_id": thread["thread_id"], "checkpoint_ns": ""}}
            out = await client.runs.wait(thread["thread_id"], "agent", input={"ticks": 1})
            assert out == {"steps": ["work", "auto"], "ticks": 1}

            conn = await AsyncConnection.connect(
                libpq_url(database), autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
            async with conn:
                reader = AsyncPostgresSaver(conn)
                stored = await reader.aget_tuple(config)
                assert stored is not None
                assert stored.checkpoint["channel_values"]["steps"] == ["work", "auto"]
                assert stored.metadata["step"] == 2
                assert len([c async for c in reader.alist(config)]) == 4  # input, start, work, approval
        finally:
            await client.aclose()
