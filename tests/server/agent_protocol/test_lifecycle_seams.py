"""Seams of a run's life the SDK tests did not reach: leaving a join / a rejoined stream / a wait
(cancels only when asked, decided in one place), and the Agent Protocol tables under the project's
one migration runner (newer-schema guard, concurrent set-up)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from server.agent_protocol.status import CancelAction
from server.agent_protocol.storage import ProtocolStore, async_url
from server.agent_protocol.storage.tables import MIGRATIONS, migrations_t
from tests.server.agent_protocol.support import ServerProcess

SLOW = {"assistant_id": "agent", "input": {"ticks": 200, "delay": 0.05}}


async def _status(http: httpx.AsyncClient, tid: str, run_id: str, want: str, within: float) -> str:
    deadline = time.monotonic() + within
    status = ""
    while time.monotonic() < deadline:
        status = (await http.get(f"/threads/{tid}/runs/{run_id}")).json()["status"]
        if status == want:
            break
        await asyncio.sleep(0.05)
    return status


async def _leave_early(http: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> None:
    """Open a streamed response, read its first bytes, and hang up (a real socket close)."""
    async with http.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        assert response.status_code == 200
        async for _ in response.aiter_bytes():
            break


@pytest.mark.parametrize("cancel", [True, False])
async def test_leaving_a_join_or_rejoined_stream(sample_server: ServerProcess, cancel: bool) -> None:
    flag = "1" if cancel else "0"
    async with httpx.AsyncClient(
        base_url=sample_server.url, headers=sample_server.headers, timeout=30
    ) as http:
        for tail in ("join", "stream"):
            tid = (await http.post("/threads", json={})).json()["thread_id"]
            run_id = (await http.post(f"/threads/{tid}/runs", json=SLOW)).json()["run_id"]
            assert await _status(http, tid, run_id, "running", 5) == "running"
            await _leave_early(
                http, "GET", f"/threads/{tid}/runs/{run_id}/{tail}", params={"cancel_on_disconnect": flag}
            )
            if cancel:
                assert await _status(http, tid, run_id, "interrupted", 5) == "interrupted", tail
            else:
                await asyncio.sleep(0.5)
                assert (await http.get(f"/threads/{tid}/runs/{run_id}")).json()["status"] == "running", tail
                await http.post(f"/threads/{tid}/runs/{run_id}/cancel", params={"wait": "1"})


async def test_leaving_a_wait_cancels_when_asked(sample_server: ServerProcess) -> None:
    async with httpx.AsyncClient(
        base_url=sample_server.url, headers=sample_server.headers, timeout=30
    ) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        body = {**SLOW, "on_disconnect": "cancel"}
        async with http.stream("POST", f"/threads/{tid}/runs/wait", json=body) as response:
            run_id = response.headers["content-location"].rsplit("/", 1)[1]
            await asyncio.sleep(0.3)
        assert await _status(http, tid, run_id, "interrupted", 5) == "interrupted"


def test_cancel_action_parse() -> None:
    assert CancelAction.parse("rollback") is CancelAction.ROLLBACK
    assert CancelAction.parse(None) is CancelAction.INTERRUPT
    assert CancelAction.parse("lost") is CancelAction.INTERRUPT  # internal states are not user actions


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        from tests.server.agent_protocol.support import fresh_database

        return async_url(fresh_database(request.getfixturevalue("postgres_url")), tmp_path)
    return async_url(None, tmp_path / uuid.uuid4().hex)


async def test_schema_setup_is_concurrent_safe_and_leaves_a_newer_schema(database_url: str) -> None:
    stores = [ProtocolStore.from_url(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.setup() for s in stores))  # several processes starting at once
        latest = MIGRATIONS.latest(stores[0].engine.dialect.name)
        async with stores[0].engine.begin() as conn:
            versions = (await conn.execute(sa.select(migrations_t.c.version))).scalars().all()
            assert sorted(versions) == list(range(1, latest + 1))
            # A newer release migrated this database: older code must leave it alone, not fail.
            await conn.execute(migrations_t.insert().values(version=latest + 1, applied_at="later"))
        await stores[1].setup()
        async with stores[0].engine.connect() as conn:
            top = (await conn.execute(sa.select(sa.func.max(migrations_t.c.version)))).scalar()
        assert top == latest + 1
    finally:
        for s in stores:
            await s.close()
