"""What browser front-ends (agent-chat-ui, Studio) need beyond the SDK: CORS, JSON under any label,
threads findable by assistant, and a thread's values showing its first run's input while it runs."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from tests.server.agent_protocol.support import ServerProcess

ORIGIN = "http://127.0.0.1:9"  # another origin than the server's


def _headers(server: ServerProcess, **extra: str) -> dict[str, str]:
    return {"X-Api-Key": server.api_key or "", **extra}


async def test_cors_preflight_and_exposed_headers(sample_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=sample_server.url, timeout=30) as http:
        tid = (await http.post("/threads", json={}, headers=_headers(sample_server))).json()["thread_id"]
        preflight = await http.options(
            f"/threads/{tid}/runs/stream",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in preflight.headers
        created = await http.post(
            f"/threads/{tid}/runs",
            json={"assistant_id": "agent", "input": {"ticks": 1}},
            headers=_headers(sample_server, Origin=ORIGIN),
        )
        assert created.status_code == 200, created.text
        exposed = created.headers["access-control-expose-headers"].lower()
        assert {"content-location", "location"} <= {h.strip() for h in exposed.split(",")}
        info = await http.get("/info", headers={"Origin": ORIGIN})
        assert info.headers["access-control-allow-origin"] == "*"


async def test_json_bodies_labelled_text_plain(sample_server: ServerProcess) -> None:
    """agent-chat-ui's Next.js proxy forwards JSON as text/plain: the protocol routes read it anyway."""
    plain = _headers(sample_server, **{"Content-Type": "text/plain;charset=UTF-8"})
    async with httpx.AsyncClient(base_url=sample_server.url, timeout=60) as http:
        thread = await http.post(
            "/threads", content=json.dumps({"metadata": {"via": "proxy"}}), headers=plain
        )
        assert thread.status_code == 200, thread.text
        tid = thread.json()["thread_id"]
        body = {"assistant_id": "agent", "input": {"ticks": 1}}
        waited = await http.post(f"/threads/{tid}/runs/wait", content=json.dumps(body), headers=plain)
        assert waited.status_code == 200, waited.text
        assert json.loads(waited.text)["ticks"] == 1
        found = await http.post(
            "/threads/search", content=json.dumps({"metadata": {"via": "proxy"}}), headers=plain
        )
        assert tid in [t["thread_id"] for t in found.json()]
        broken = await http.post("/threads", content=b"not json", headers=plain)
        assert broken.status_code == 422


async def test_thread_values_show_the_input_while_the_first_run_runs(sample_server: ServerProcess) -> None:
    run_input = {"ticks": 40, "delay": 0.05, "tag": uuid.uuid4().hex}
    async with httpx.AsyncClient(
        base_url=sample_server.url, timeout=30, headers=_headers(sample_server)
    ) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        assert (await http.get(f"/threads/{tid}")).json()["values"] is None
        run = (
            await http.post(f"/threads/{tid}/runs", json={"assistant_id": "agent", "input": run_input})
        ).json()
        for _ in range(200):
            thread = (await http.get(f"/threads/{tid}")).json()
            if thread["status"] == "busy":
                break
            await asyncio.sleep(0.02)
        assert thread["status"] == "busy"
        assert thread["values"] == run_input  # before the run ends
        await http.post(f"/threads/{tid}/runs/{run['run_id']}/cancel", params={"wait": "1"})
        after = (await http.get(f"/threads/{tid}")).json()
        assert after["status"] == "idle" and after["values"]["ticks"] == 40


@pytest.mark.parametrize("metadata_key", ["graph_id", "assistant_id"])
async def test_threads_are_found_by_graph_or_assistant(
    sample_server: ServerProcess, metadata_key: str
) -> None:
    async with httpx.AsyncClient(
        base_url=sample_server.url, timeout=30, headers=_headers(sample_server)
    ) as http:
        assistant = (await http.get("/assistants/agent")).json()
        tid = str(uuid.uuid4())
        # created by its first run (if_not_exists), as agent-chat-ui does
        await http.post(
            f"/threads/{tid}/runs/wait",
            json={"assistant_id": "agent", "input": {"ticks": 1}, "if_not_exists": "create"},
        )
        found = await http.post(
            "/threads/search", json={"metadata": {metadata_key: assistant[metadata_key]}, "limit": 1000}
        )
        assert tid in [t["thread_id"] for t in found.json()]
