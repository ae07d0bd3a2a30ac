"""Per-step overhead of the agent graph with no checkpointer, SQLite and Postgres.

The model is the scripted OpenAI-compatible server (answers instantly), web search a local corpus, so
the time measured is the graph's own: state handling, routing, checkpoint writes. Each turn runs
``task_agent -> search_agent -> task_agent -> respond`` (4 node steps) on one thread that grows
turn by turn. The work is the same in every configuration: with a checkpointer the graph loads the
conversation from its last checkpoint; without one the caller sends it back (as a stateless client
does), so the model gets the same growing conversation either way and only the checkpointing
differs. (Before, the run without a checkpointer started each turn from an empty conversation:
its model calls were smaller, which counted as checkpoint overhead.) The configurations alternate
for ``--rounds`` rounds and each figure is the median of its rounds, so a machine busy with other
work shifts them all alike. Postgres is used when DATABASE_URL is set, else a throw-away cluster
is started when PostgreSQL is installed. The last line gives the ratios to no checkpointer.

Usage: python bench/graph_overhead.py [--turns 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import BaseMessage, HumanMessage  # noqa: E402
from langgraph.checkpoint.base import BaseCheckpointSaver  # noqa: E402

from agents.checkpoint import (  # noqa: E402
    flush_checkpoints,
    open_postgres_checkpointer,
    open_sqlite_checkpointer,
)
from agents.context import Context  # noqa: E402
from agents.graph import build_graph  # noqa: E402
from tests.support.scripted_openai import RESPOND, ROUTER, Reply, ScriptedOpenAI  # noqa: E402
from tools.search_backends import LocalCorpusSearch, WebResult  # noqa: E402

STEPS_PER_TURN = 4
CORPUS = [WebResult(title="Doc", url="https://example/doc", snippet="graph checkpoint overhead")]


class _Router:
    """Alternates search / answer so each turn is exactly four node steps.

    task_agent -> search_agent -> task_agent -> respond (the reply is streamed by its own node since
    issue 9, the router no longer writes it).
    """

    def __init__(self, server: ScriptedOpenAI) -> None:
        self.server = server

    def arm(self, turns: int) -> None:
        self.server.reset()
        self.server.when(RESPOND, "done")
        for _ in range(turns):
            self.server.add(Reply('{"next": "search", "task": "graph overhead"}', match=ROUTER))
            self.server.add(Reply('{"next": "answer"}', match=ROUTER))


@contextlib.contextmanager
def _postgres_url() -> Iterator[str | None]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from tests.support.postgres import find_pg_bin, postgres_cluster

    if find_pg_bin() is None:
        yield None
        return
    with postgres_cluster() as url:
        yield url


async def _measure(
    saver: BaseCheckpointSaver[str] | None, ctx: Context, router: _Router, turns: int
) -> float:
    graph = build_graph().compile(checkpointer=saver)
    config: dict[str, Any] = {"configurable": {"thread_id": uuid.uuid4().hex}}
    history: list[BaseMessage] = []

    async def turn(text: str) -> None:
        nonlocal history
        sent = [HumanMessage(text)] if saver is not None else [*history, HumanMessage(text)]
        # As the server runs a turn: "async" durability, and the run's checkpoints committed
        # before it is reported done (flush_checkpoints; a no-op for savers that do not queue).
        out = await graph.ainvoke({"messages": sent}, config, context=ctx, durability="async")
        await flush_checkpoints(saver, config["configurable"]["thread_id"])
        history = list(out["messages"])

    router.arm(turns + 2)
    for _ in range(2):  # warm-up
        await turn("warm up")
    started = time.perf_counter()
    for i in range(turns):
        await turn(f"turn {i}")
    return (time.perf_counter() - started) * 1000 / (turns * STEPS_PER_TURN)


async def main(turns: int, rounds: int) -> None:
    with ScriptedOpenAI() as server, _postgres_url() as pg_url, tempfile.TemporaryDirectory() as tmp:
        router = _Router(server)
        ctx = Context(
            model_base_url=server.url,
            model_api_key="bench",
            model_name="scripted",
            structured_output=False,
            web_search=LocalCorpusSearch(CORPUS),
            search_read_pages=0,  # the corpus' addresses are not loopback: no browsing in a bench
        )
        results: dict[str, list[float]] = {"none": [], "sqlite": []}
        async with contextlib.AsyncExitStack() as stack:
            savers: dict[str, BaseCheckpointSaver[str] | None] = {"none": None}
            savers["sqlite"] = await stack.enter_async_context(
                open_sqlite_checkpointer(Path(tmp) / "checkpoints.db")
            )
            if pg_url:
                savers["postgres"] = await stack.enter_async_context(open_postgres_checkpointer(pg_url))
                results["postgres"] = []
            for _ in range(rounds):
                for name, saver in savers.items():
                    results[name].append(await _measure(saver, ctx, router, turns))
        median = {name: statistics.median(values) for name, values in results.items()}
        for name, ms in median.items():
            spread = " ".join(f"{v:.2f}" for v in results[name])
            print(f"{name:9s} {ms:7.2f} ms per step (median of {spread})")
        base = median["none"]
        ratios = "  ".join(f"{name}/none={ms / base:.2f}" for name, ms in median.items() if name != "none")
        print(f"ratio to no checkpointer: {ratios}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median taken)")
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.rounds))
