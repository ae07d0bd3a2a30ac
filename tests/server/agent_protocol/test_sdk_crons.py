"""Crons through ``langgraph-sdk`` (``client.crons``) against the real server, on SQLite and Postgres.

Every cron endpoint the SDK calls (create for a thread, create stateless, search, count, update,
delete) and ``GET /runs/crons/{id}``; schedules and runs checked before anything is stored (422
saying what to fix); the per-tenant cap; another tenant gets 404 and sees none; crons fire on the
sample server (every 2 s allowed there) and stop when disabled or deleted; a thread's or an
assistant's crons go when it does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from tests.server.agent_protocol.conftest import CRON_CAP
from tests.server.agent_protocol.support import OTHER_KEY, ServerProcess

CRON_KEYS = {
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "payload",
    "user_id",
    "next_run_date",
    "metadata",
    "enabled",
}
DEFAULT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))
QUICK = {"ticks": 1, "delay": 0.0}
EVERY_2S = "* * * * * */2"
HOURLY = "0 * * * *"


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
async def thread_id(client: LangGraphClient) -> AsyncIterator[str]:
    """A fresh thread of the default tenant, deleted after the test (its crons with it)."""
    tid = str((await client.threads.create())["thread_id"])
    yield tid
    await client.threads.delete(tid)


async def _cron_runs(client: LangGraphClient, thread_id: str, cron_id: str) -> list[dict[str, Any]]:
    runs = await client.runs.list(thread_id, limit=100)
    return [r for r in runs if r["metadata"].get("cron_id") == cron_id]


async def test_thread_cron_create_get_search_count_update_delete(
    client: LangGraphClient, sample_server: ServerProcess, thread_id: str
) -> None:
    team = {"team": uuid.uuid4().hex}
    before = time.time()
    cron = await client.crons.create_for_thread(
        thread_id, "agent", schedule=HOURLY, input=QUICK, metadata=team, context={"tier": "light"}
    )
    assert set(cron) == CRON_KEYS
    assert cron["thread_id"] == thread_id and cron["assistant_id"] == DEFAULT_ID
    assert cron["schedule"] == HOURLY and cron["enabled"] is True and cron["end_time"] is None
    assert cron["on_run_completed"] is None and cron["metadata"] == team
    assert cron["payload"]["input"] == QUICK and cron["payload"]["assistant_id"] == DEFAULT_ID
    assert cron["payload"]["context"] == {"tier": "light"}
    first = _when(cron["next_run_date"])
    assert first.minute == 0 and first.second == 0 and 0 < first.timestamp() - before <= 3600
    cron_id = cron["cron_id"]

    async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
        got = await http.get(f"/runs/crons/{cron_id}")
        assert got.status_code == 200 and got.json() == cron

    found = await client.crons.search(thread_id=thread_id)
    assert [c["cron_id"] for c in found] == [cron_id]
    assert [c["cron_id"] for c in await client.crons.search(metadata=team)] == [cron_id]
    assert await client.crons.search(metadata={"team": "nobody"}) == []
    picked = await client.crons.search(thread_id=thread_id, select=["cron_id", "schedule"])
    assert picked == [{"cron_id": cron_id, "schedule": HOURLY}]
    assert await client.crons.count(thread_id=thread_id) == 1
    assert await client.crons.count(metadata=team) == 1
    assert await client.crons.count(assistant_id="agent", metadata=team) == 1

    end = datetime.now(UTC) + timedelta(days=2)
    updated = await client.crons.update(
        cron_id, schedule="30 6 * * *", timezone="Europe/Paris", end_time=end, enabled=False
    )
    assert updated["schedule"] == "30 6 * * *" and updated["timezone"] == "Europe/Paris"
    assert updated["enabled"] is False
    assert abs(_when(updated["end_time"]).timestamp() - end.timestamp()) < 0.001
    paris = _when(updated["next_run_date"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (paris.hour, paris.minute) == (6, 30)
    assert updated["payload"] == cron["payload"] and updated["updated_at"] > cron["updated_at"]
    assert await client.crons.search(thread_id=thread_id, enabled=True) == []
    cleared = await client.crons.update(cron_id, end_time=None, input={"ticks": 2}, metadata={"x": 1})
    assert cleared["end_time"] is None and cleared["payload"]["input"] == {"ticks": 2}
    assert cleared["metadata"] == {**team, "x": 1} and cleared["payload"]["context"] == {"tier": "light"}

    await client.crons.delete(cron_id)
    assert await client.crons.search(thread_id=thread_id) == []
    with pytest.raises(NotFoundError):
        await client.crons.delete(cron_id)
    with pytest.raises(NotFoundError):
        await client.crons.update(cron_id, enabled=True)


async def test_stateless_cron_and_sorting(client: LangGraphClient) -> None:
    team = {"team": uuid.uuid4().hex}
    made = []
    try:
        for schedule in ("0 5 * * *", "0 3 * * *", "0 4 * * *"):
            made.append(await client.crons.create("agent", schedule=schedule, input=QUICK, metadata=team))
        kept = await client.crons.create(
            "agent", schedule="0 6 * * *", on_run_completed="keep", metadata=team, timezone="UTC"
        )
        made.append(kept)
        assert made[0]["thread_id"] is None and made[0]["on_run_completed"] == "delete"
        assert kept["on_run_completed"] == "keep" and kept["timezone"] == "UTC"
        by_next = await client.crons.search(metadata=team, sort_by="next_run_date", sort_order="asc")
        dates = [_when(c["next_run_date"]) for c in by_next]
        assert dates == sorted(dates) and len(set(dates)) == 4
        by_next_desc = await client.crons.search(metadata=team, sort_by="next_run_date", sort_order="desc")
        assert by_next_desc == list(reversed(by_next))
        newest_first = await client.crons.search(metadata=team)
        assert [c["cron_id"] for c in newest_first] == [c["cron_id"] for c in reversed(made)]
        page = await client.crons.search(metadata=team, limit=3, offset=3)
        assert [c["cron_id"] for c in page] == [made[0]["cron_id"]]
        assert await client.crons.count(metadata=team) == 4
    finally:
        for c in made:
            await client.crons.delete(c["cron_id"])


async def test_pagination_header(client: LangGraphClient, sample_server: ServerProcess) -> None:
    team = {"team": uuid.uuid4().hex}
    made = [await client.crons.create("agent", schedule=HOURLY, metadata=team) for _ in range(2)]
    try:
        async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
            first = await http.post("/runs/crons/search", json={"metadata": team, "limit": 1})
            assert first.headers["X-Pagination-Next"] == "1" and len(first.json()) == 1
            last = await http.post("/runs/crons/search", json={"metadata": team, "limit": 1, "offset": 1})
            assert "X-Pagination-Next" not in last.headers and len(last.json()) == 1
    finally:
        for c in made:
            await client.crons.delete(c["cron_id"])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"schedule": "every day at noon"}, "not a cron expression"),
        ({"schedule": "61 * * * *"}, "out of range"),
        ({"schedule": "* * * *"}, "5 fields"),
        ({"schedule": "* * * * * *"}, "AGENTIC_CRON_MIN_INTERVAL_S"),
        ({"schedule": "0,1 * * * * *"}, "fires every 1 s"),
        ({"schedule": ""}, "schedule"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"end_time": "2001-01-01T00:00:00+00:00"}, "end_time is in the past"),
        ({"end_time": "2101-01-01T00:00:00"}, "timezone"),  # a naive time: which zone?
        ({"context": {"model_base_url": "http://127.0.0.1:1"}}, "model_base_url"),
        ({"context": {"tier": "heavy"}}, "medium"),
        ({"webhook": "http://127.0.0.1:9/hook"}, "webhook"),
        ({"multitask_strategy": "sometimes"}, "multitask_strategy"),
    ],
)
async def test_bad_crons_are_refused_and_nothing_is_stored(
    client: LangGraphClient, sample_server: ServerProcess, thread_id: str, change: dict[str, Any], says: str
) -> None:
    body = {"assistant_id": "agent", "schedule": HOURLY, **change}
    async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
        for path in ("/runs/crons", f"/threads/{thread_id}/runs/crons"):
            r = await http.post(path, json=body)
            assert r.status_code == 422, r.text
            assert says in r.text, r.text
    assert await client.crons.count(thread_id=thread_id) == 0


async def test_a_bad_patch_is_refused_and_changes_nothing(client: LangGraphClient, thread_id: str) -> None:
    cron = await client.crons.create_for_thread(thread_id, "agent", schedule=HOURLY)
    with pytest.raises(UnprocessableEntityError, match="MIN_INTERVAL"):
        await client.crons.update(cron["cron_id"], schedule="* * * * * *", enabled=False)
    with pytest.raises(UnprocessableEntityError, match="model_base_url"):
        await client.crons.update(cron["cron_id"], context={"model_base_url": "http://127.0.0.1:1"})
    with pytest.raises(UnprocessableEntityError, match="stateless"):
        await client.crons.update(cron["cron_id"], on_run_completed="keep")
    with pytest.raises(UnprocessableEntityError, match="nothing to change"):
        await client.crons.update(cron["cron_id"])
    (now,) = await client.crons.search(thread_id=thread_id)
    assert now == cron


async def test_unknown_thread_and_assistant_are_404(client: LangGraphClient) -> None:
    with pytest.raises(NotFoundError):
        await client.crons.create_for_thread(str(uuid.uuid4()), "agent", schedule=HOURLY)
    with pytest.raises(NotFoundError):
        await client.crons.create(str(uuid.uuid4()), schedule=HOURLY)


async def test_another_tenant_gets_404_and_sees_none(
    client: LangGraphClient, other_client: LangGraphClient, sample_server: ServerProcess, thread_id: str
) -> None:
    mine = await client.crons.create_for_thread(thread_id, "agent", schedule=HOURLY)
    assistant = await client.assistants.create("agent", name="mine")
    try:
        cron_id = mine["cron_id"]
        assert cron_id not in [c["cron_id"] for c in await other_client.crons.search(limit=1000)]
        assert await other_client.crons.count(thread_id=thread_id) == 0
        with pytest.raises(NotFoundError):
            await other_client.crons.update(cron_id, enabled=False)
        with pytest.raises(NotFoundError):
            await other_client.crons.delete(cron_id)
        with pytest.raises(NotFoundError):  # my thread
            await other_client.crons.create_for_thread(thread_id, "agent", schedule=HOURLY)
        with pytest.raises(NotFoundError):  # my assistant
            await other_client.crons.create(assistant["assistant_id"], schedule=HOURLY)
        async with httpx.AsyncClient(base_url=sample_server.url) as http:
            got = await http.get(f"/runs/crons/{cron_id}", headers={"X-API-Key": OTHER_KEY})
            assert got.status_code == 404
        (still,) = await client.crons.search(thread_id=thread_id)
        assert still == mine
    finally:
        await client.assistants.delete(assistant["assistant_id"])


async def test_per_tenant_cap(client: LangGraphClient, other_client: LangGraphClient) -> None:
    made = []
    try:
        while await other_client.crons.count() < CRON_CAP:
            made.append(await other_client.crons.create("agent", schedule=HOURLY))
        with pytest.raises(ConflictError, match="AGENTIC_CRON_MAX_PER_TENANT"):
            await other_client.crons.create("agent", schedule=HOURLY)
        mine = await client.crons.create("agent", schedule=HOURLY)  # another tenant's count is its own
        await client.crons.delete(mine["cron_id"])
        await other_client.crons.delete(made.pop()["cron_id"])
        made.append(await other_client.crons.create("agent", schedule=HOURLY))
    finally:
        for c in made:
            await other_client.crons.delete(c["cron_id"])


async def test_a_thread_cron_fires_runs_until_disabled_or_deleted(
    client: LangGraphClient, thread_id: str
) -> None:
    cron = await client.crons.create_for_thread(thread_id, "agent", schedule=EVERY_2S, input=QUICK)
    cron_id = cron["cron_id"]
    deadline = time.monotonic() + 20
    while len(runs := await _cron_runs(client, thread_id, cron_id)) < 2:
        assert time.monotonic() < deadline, f"the cron made {len(runs)} run(s) in 20 s"
        await asyncio.sleep(0.2)
    fires = sorted(_when(r["metadata"]["cron_fire"]) for r in runs)
    assert all(f.second % 2 == 0 and f.microsecond == 0 for f in fires)
    assert len(set(fires)) == len(fires)  # one run per scheduled time
    assert all(r["assistant_id"] == DEFAULT_ID for r in runs)
    await client.runs.join(thread_id, runs[0]["run_id"])
    state = await client.threads.get_state(thread_id)
    assert "work" in state["values"]["steps"]

    await client.crons.update(cron_id, enabled=False)
    await asyncio.sleep(0.5)  # a fire claimed before the update may still be queued
    stopped = len(await _cron_runs(client, thread_id, cron_id))
    await asyncio.sleep(4.5)
    assert len(await _cron_runs(client, thread_id, cron_id)) == stopped

    enabled = await client.crons.update(cron_id, enabled=True)
    assert _when(enabled["next_run_date"]).timestamp() > time.time() - 1  # no burst of missed fires
    deadline = time.monotonic() + 10
    while len(await _cron_runs(client, thread_id, cron_id)) == stopped:
        assert time.monotonic() < deadline, "the cron did not fire again once enabled"
        await asyncio.sleep(0.2)
    await client.crons.delete(cron_id)
    await asyncio.sleep(0.5)
    after = len(await _cron_runs(client, thread_id, cron_id))
    await asyncio.sleep(4.5)
    assert len(await _cron_runs(client, thread_id, cron_id)) == after


async def test_a_stateless_cron_fires_on_threads_of_its_own(client: LangGraphClient) -> None:
    assistant = await client.assistants.create("agent", name="cron-keeper", context={"tier": "light"})
    aid = assistant["assistant_id"]
    try:
        cron = await client.crons.create(aid, schedule=EVERY_2S, input=QUICK, on_run_completed="keep")
        deadline = time.monotonic() + 20
        while len(threads := await client.threads.search(metadata={"assistant_id": aid})) < 2:
            assert time.monotonic() < deadline, f"{len(threads)} kept thread(s) in 20 s"
            await asyncio.sleep(0.2)
        await client.crons.delete(cron["cron_id"])
        for thread in threads:
            (run,) = await client.runs.list(thread["thread_id"])
            assert run["metadata"]["cron_id"] == cron["cron_id"] and run["assistant_id"] == aid
            assert run["kwargs"]["context"] == {"tier": "light"}  # the assistant's, as for any run
    finally:
        await client.assistants.delete(aid, delete_threads=True)


async def test_a_threads_and_an_assistants_crons_go_with_them(client: LangGraphClient) -> None:
    tid = str((await client.threads.create())["thread_id"])
    on_thread = await client.crons.create_for_thread(tid, "agent", schedule=HOURLY)
    assistant = await client.assistants.create("agent", name="short-lived")
    of_assistant = await client.crons.create(assistant["assistant_id"], schedule=HOURLY)
    await client.threads.delete(tid)
    await client.assistants.delete(assistant["assistant_id"])
    for cron in (on_thread, of_assistant):
        with pytest.raises(NotFoundError):
            await client.crons.delete(cron["cron_id"])


async def test_ids_with_a_nul_name_nothing(sample_server: ServerProcess) -> None:
    """Postgres text holds no NUL: such an id is answered as missing, not as a server error."""
    async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
        assert (await http.get("/runs/crons/a%00b")).status_code == 404
        assert (await http.delete("/runs/crons/a%00b")).status_code == 404
        assert (await http.patch("/runs/crons/a%00b", json={"enabled": False})).status_code == 404
        made = await http.post(
            "/threads/a%00b/runs/crons", json={"assistant_id": "agent", "schedule": HOURLY}
        )
        assert made.status_code == 404
        found = await http.post("/runs/crons/search", json={"thread_id": "a\x00b"})
        assert found.status_code == 200 and found.json() == []
        counted = await http.post("/runs/crons/count", json={"thread_id": "a\x00b"})
        assert counted.status_code == 200 and counted.json() == 0


async def test_info_says_crons(sample_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
        assert (await http.get("/info")).json()["flags"]["crons"] is True
