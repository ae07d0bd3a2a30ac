"""Structured logs: JSON lines carrying the tenant, thread and run bound in the current task."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from server import logs


async def test_json_lines_carry_the_ids_bound_in_each_task() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("tests.server.logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    async def run(n: int) -> None:
        logs.bind(tenant=f"t{n}", thread_id=f"th{n}", run_id=f"r{n}")
        await asyncio.sleep(0)
        log.info("step %d", n)

    try:
        await asyncio.gather(run(1), run(2))
        with logs.bound(tenant="outer"):
            log.warning("outside a run")
        log.info("nothing bound")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_message = {line["message"]: line for line in lines}
    assert by_message["step 1"] | {"time": ""} == {
        "time": "",
        "level": "info",
        "logger": "tests.server.logs",
        "message": "step 1",
        "tenant": "t1",
        "thread_id": "th1",
        "run_id": "r1",
    }
    assert by_message["step 2"]["run_id"] == "r2"  # tasks do not see each other's ids
    assert by_message["outside a run"]["tenant"] == "outer" and "run_id" not in by_message["outside a run"]
    assert "tenant" not in by_message["nothing bound"]  # ``bound`` restored the previous value
