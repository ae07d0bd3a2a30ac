"""A cron fires once per scheduled time across two server processes on one Postgres.

Both processes run the scheduler, wake at the same instants (they sleep until the earliest fire)
and race for each fire; the compare-and-set on ``next_run_at`` lets one of them queue the run.
The cron fires every second; every run carries its scheduled time (``metadata.cron_fire``), so
a fire made twice shows as two runs with one time. Then both processes stop for a few seconds:
the fires missed meanwhile are made once, not once each, when a process comes back.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.agent_protocol.support import ServerProcess, fresh_database

SAMPLE_GRAPH = "tests.server.agent_protocol.sample_graphs:graph"
EVERY_SECOND = "* * * * * *"


def _env(url: str) -> dict[str, str]:
    return {
        "AGENTIC_GRAPH_REF": SAMPLE_GRAPH,
        "AGENTIC_DATABASE_URL": url,
        "AGENTIC_CRON_MIN_INTERVAL_S": "1",
        "AGENTIC_CRON_POLL_S": "0.2",
    }


async def _fires(client: LangGraphClient, thread_id: str, cron_id: str) -> list[float]:
    """The scheduled times of the runs the cron made, sorted (a time twice: a fire made twice)."""
    runs = await client.runs.list(thread_id, limit=1000)
    mine = [r for r in runs if r["metadata"].get("cron_id") == cron_id]
    return sorted(datetime.fromisoformat(r["metadata"]["cron_fire"]).timestamp() for r in mine)


def _fires_in_db(url: str, cron_id: str) -> list[float]:
    """The same, read from the database (while no server runs)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT metadata FROM ap_runs").fetchall()
    found = [json.loads(m) for (m,) in rows]
    return sorted(
        datetime.fromisoformat(m["cron_fire"]).timestamp() for m in found if m.get("cron_id") == cron_id
    )


def _fired(server: ServerProcess) -> float:
    """This process's ``agentic_cron_fires_total{outcome="fired"}``."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    found = re.search(r'^agentic_cron_fires_total\{outcome="fired"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_cron_fires_once_per_time_across_two_processes(postgres_url: str, tmp_path: Path) -> None:
    env = _env(fresh_database(postgres_url, "ap_cron_"))
    a, b = ServerProcess(tmp_path / "a", env), ServerProcess(tmp_path / "b", env)
    with a, b:
        ca = get_client(url=a.url, api_key=a.api_key)
        cb = get_client(url=b.url, api_key=b.api_key)
        try:
            tid = str((await ca.threads.create())["thread_id"])
            cron = await ca.crons.create_for_thread(
                tid, "agent", schedule=EVERY_SECOND, input={"ticks": 1, "delay": 0.0}
            )
            cron_id = cron["cron_id"]
            await asyncio.sleep(7)
            fires = await _fires(cb, tid, cron_id)
            assert len(fires) >= 4, f"{len(fires)} fires in 7 s"
            assert len(set(fires)) == len(fires), f"a scheduled time fired twice: {fires}"
            assert all(f == int(f) for f in fires)
            # the seconds in between: each fired (a late tick may merge with the next, rarely)
            assert len(fires) >= 0.8 * (fires[-1] - fires[0] + 1), fires
            made_by = _fired(a) + _fired(b)
            assert made_by >= len(fires)  # fires counted by the process that made them, once each
        finally:
            await ca.aclose()
            await cb.aclose()
        b.stop()
        a.stop()
        before = _fires_in_db(env["AGENTIC_DATABASE_URL"], cron_id)
        await asyncio.sleep(4)  # ~4 scheduled times pass with no server
        starting = time.time()
        a.__enter__()  # the same database, port and log
        ca = get_client(url=a.url, api_key=a.api_key)
        try:
            deadline = time.monotonic() + 20
            while len([f for f in await _fires(ca, tid, cron_id) if f > starting]) < 2:
                assert time.monotonic() < deadline, "the cron did not fire on after the restart"
                await asyncio.sleep(0.2)
            await ca.crons.delete(cron_id)
            fires = await _fires(ca, tid, cron_id)
        finally:
            await ca.aclose()
    assert len(set(fires)) == len(fires), fires
    made_up = [f for f in fires if f not in before and f < starting]  # scheduled while none ran
    assert len(made_up) == 1, f"missed fires made: {made_up} (want them made once, not each)"
    assert starting - max(before) > 3  # several fires were missed
