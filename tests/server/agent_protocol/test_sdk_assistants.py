"""Assistants through ``langgraph-sdk`` against the real server, on SQLite and on Postgres.

Create / get / search / count / patch (versions) / latest / delete; the assistant's context reaches
its runs under the run's own; the operator's policy refuses what no client may set (nothing is
stored then); the default assistant is read-only; another tenant gets 404 for all of it.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.server.agent_protocol.support import ServerProcess

ASSISTANT_KEYS = {
    "assistant_id",
    "graph_id",
    "config",
    "context",
    "created_at",
    "updated_at",
    "metadata",
    "version",
    "name",
    "description",
}
DEFAULT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))


def _message(response: httpx.Response) -> str:
    """The error's message (the server's envelope: ``{"error": {"type", "message"}}``)."""
    return str(response.json()["error"]["message"])


def _team() -> dict[str, str]:
    return {"team": uuid.uuid4().hex}


async def _context_seen(client: LangGraphClient, thread_id: str | None, assistant_id: str, **kw: Any) -> Any:
    """The context the graph saw in a run of the assistant (the sample graph echoes it)."""
    async for part in client.runs.stream(
        thread_id, assistant_id, input={"ticks": 0, "echo_context": True}, stream_mode="custom", **kw
    ):
        if part.event == "custom" and "context" in part.data:
            return part.data["context"]
    raise AssertionError("the run sent no context event")


async def test_create_get_search_count(client: LangGraphClient) -> None:
    team = _team()
    created = await client.assistants.create(
        "agent",
        config={"tags": ["nightly"], "recursion_limit": 40},
        context={"model_name": "small", "tier": "medium", "max_attempts": 2, "require_approval": True},
        metadata=team,
        name="Reviewer",
        description="reviews code",
    )
    assert set(created) == ASSISTANT_KEYS
    assert created["version"] == 1 and created["graph_id"] == "agent"
    assert created["context"] == {
        "model_name": "small",
        "tier": "medium",
        "max_attempts": 2,
        "require_approval": True,
    }
    assert created["config"] == {"tags": ["nightly"], "recursion_limit": 40}
    aid = created["assistant_id"]
    assert await client.assistants.get(aid) == created

    found = await client.assistants.search(metadata=team)
    assert [a["assistant_id"] for a in found] == [aid]
    assert await client.assistants.count(metadata=team) == 1
    by_name = await client.assistants.search(name="REVIEW", graph_id="agent", limit=1000)
    assert aid in [a["assistant_id"] for a in by_name]
    everything = await client.assistants.search(graph_id="agent", limit=1000)
    assert DEFAULT_ID in [a["assistant_id"] for a in everything]  # the default one is listed too

    again = await client.assistants.create("agent", assistant_id=aid, if_exists="do_nothing", name="other")
    assert again == created
    with pytest.raises(ConflictError):
        await client.assistants.create("agent", assistant_id=aid)


async def test_versions_and_latest(client: LangGraphClient) -> None:
    team = _team()
    first = await client.assistants.create("agent", context={"tier": "light"}, metadata=team, name="v")
    aid = first["assistant_id"]
    second = await client.assistants.update(aid, context={"tier": "medium", "model_name": "large"})
    assert second["version"] == 2 and second["context"] == {"tier": "medium", "model_name": "large"}
    third = await client.assistants.update(aid, metadata={"stage": "prod"}, name="v3")
    assert third["version"] == 3 and third["metadata"] == {**team, "stage": "prod"}
    assert third["context"] == second["context"]  # a patch keeps what it does not name

    versions = await client.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["context"].get("tier") for v in versions] == ["medium", "medium", "light"]
    assert [v["version"] for v in await client.assistants.get_versions(aid, limit=1, offset=1)] == [2]
    assert [v["version"] for v in await client.assistants.get_versions(aid, metadata={"stage": "prod"})] == [
        3
    ]

    back = await client.assistants.set_latest(aid, 1)
    assert back["version"] == 1 and back["context"] == {"tier": "light"} and back["name"] == "v"
    assert (await client.assistants.get(aid))["version"] == 1
    assert (await _context_seen(client, None, aid))["tier"] == "light"  # runs use the active version
    with pytest.raises(NotFoundError):
        await client.assistants.set_latest(aid, 9)
    assert (await client.assistants.get(aid))["version"] == 1


async def test_run_context_is_the_assistants_under_the_runs_own(client: LangGraphClient) -> None:
    a = await client.assistants.create(
        "agent", context={"model_name": "large", "max_attempts": 2, "tier": "light"}
    )
    aid = a["assistant_id"]
    thread = await client.threads.create()
    seen = await _context_seen(client, thread["thread_id"], aid, context={"max_attempts": 4})
    assert seen["model_name"] == "large" and seen["tier"] == "light"  # from the assistant
    assert seen["max_attempts"] == 4  # the run's own value wins where the client may set it
    assert seen["model_base_url"] is None and seen["sandbox_backend"] is None  # the operator's, untouched
    runs = await client.runs.list(thread["thread_id"])
    assert [r["assistant_id"] for r in runs] == [aid]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"context": {"model_base_url": "http://127.0.0.1:9/v1"}}, 422, "model_base_url"),
        ({"context": {"sandbox_backend": "local"}}, 422, "sandbox_backend"),
        ({"context": {"tier": "heavy"}}, 422, "light, medium"),
        ({"context": {"model_name": "gpt-elsewhere"}}, 422, "not offered"),
        ({"context": {"max_attempts": 9}}, 422, "between 1 and 4"),
        ({"context": {"api_key": "sk-x"}}, 422, "not options of graph"),
        ({"config": {"configurable": {"model_base_url": "http://127.0.0.1:9"}}}, 422, "model_base_url"),
        ({"config": {"callbacks": []}}, 422, "cannot be set on an assistant"),
        ({"config": {"recursion_limit": 10**6}}, 422, "recursion_limit"),
        ({"config": {"configurable": {"tier": "light"}}, "context": {"tier": "light"}}, 422, "not both"),
        ({"assistant_id": "not-a-uuid"}, 422, "UUID"),
        ({"graph_id": "elsewhere"}, 404, "this server serves: agent"),
    ],
)
async def test_policy_refuses_bad_assistants_and_stores_nothing(
    sample_server: ServerProcess, client: LangGraphClient, body: dict[str, Any], status: int, says: str
) -> None:
    team = _team()
    payload = {"graph_id": "agent", "metadata": team, **body}
    async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
        r = await http.post("/assistants", json=payload)
    assert r.status_code == status, r.text
    assert says in _message(r), r.text
    assert await client.assistants.count(metadata=team) == 0


async def test_bad_patch_is_refused_and_keeps_the_version(
    sample_server: ServerProcess, client: LangGraphClient
) -> None:
    a = await client.assistants.create("agent", context={"tier": "light"})
    aid = a["assistant_id"]
    async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
        r = await http.patch(f"/assistants/{aid}", json={"context": {"tier": "heavy"}})
        assert r.status_code == 422 and "light, medium" in r.text
        r = await http.patch(f"/assistants/{aid}", json={"context": {"model_api_key": "sk"}})
        assert r.status_code == 422 and "model_api_key" in r.text
    assert (await client.assistants.get(aid))["version"] == 1
    assert len(await client.assistants.get_versions(aid)) == 1


async def test_default_assistant_is_read_only(sample_server: ServerProcess, client: LangGraphClient) -> None:
    for ref in ("agent", DEFAULT_ID):
        got = await client.assistants.get(ref)
        assert got["assistant_id"] == DEFAULT_ID and set(got) == ASSISTANT_KEYS
        assert [v["version"] for v in await client.assistants.get_versions(ref)] == [1]
    async with httpx.AsyncClient(base_url=sample_server.url, headers=sample_server.headers) as http:
        for r in (
            await http.patch(f"/assistants/{DEFAULT_ID}", json={"name": "mine"}),
            await http.delete("/assistants/agent"),
            await http.post(f"/assistants/{DEFAULT_ID}/latest", json={"version": 1}),
        ):
            assert r.status_code == 409, r.text
            assert "default assistant" in r.text and "POST /assistants" in r.text
    assert (await client.assistants.get("agent"))["name"] == "agent"


async def test_another_tenant_gets_404(client: LangGraphClient, other_client: LangGraphClient) -> None:
    team = _team()
    a = await client.assistants.create("agent", context={"tier": "light"}, metadata=team)
    aid = a["assistant_id"]
    thread = await other_client.threads.create()
    calls = [
        other_client.assistants.get(aid),
        other_client.assistants.update(aid, name="taken"),
        other_client.assistants.delete(aid),
        other_client.assistants.get_versions(aid),
        other_client.assistants.set_latest(aid, 1),
        other_client.assistants.get_schemas(aid),
        other_client.assistants.get_graph(aid),
        other_client.runs.wait(thread["thread_id"], aid, input={"ticks": 0}),
        other_client.runs.wait(None, aid, input={"ticks": 0}),
        other_client.runs.create(None, aid, input={"ticks": 0}),
    ]
    for call in calls:
        with pytest.raises(httpx.HTTPStatusError) as caught:  # runs.wait raises httpx's own error
            await call
        assert caught.value.response.status_code == 404
    assert await other_client.assistants.search(metadata=team) == []
    assert await other_client.assistants.count(metadata=team) == 0
    with pytest.raises(ConflictError):  # ids are global: the other tenant cannot take this one
        await other_client.assistants.create("agent", assistant_id=aid, if_exists="do_nothing")
    assert await other_client.runs.list(thread["thread_id"]) == []  # the refused run left nothing
    still = await client.assistants.get(aid)
    assert still["version"] == 1 and still["name"] == a["name"]


async def test_delete_with_its_threads(client: LangGraphClient) -> None:
    a = await client.assistants.create("agent")
    aid = a["assistant_id"]
    kept = await client.threads.create()
    used = await client.runs.wait(None, aid, input={"ticks": 0}, on_completion="keep")
    assert used["steps"] == ["work", "auto"]
    mine = await client.threads.search(metadata={"assistant_id": aid})
    assert len(mine) == 1
    await client.assistants.delete(aid, delete_threads=True)
    for call in (
        client.assistants.get(aid),
        client.assistants.get_versions(aid),
        client.threads.get(mine[0]["thread_id"]),
    ):
        with pytest.raises(NotFoundError):
            await call
    assert (await client.threads.get(kept["thread_id"]))["thread_id"] == kept["thread_id"]
    with pytest.raises(NotFoundError):
        await client.assistants.delete(aid)


async def test_search_pages_select_and_sort(client: LangGraphClient) -> None:
    team = _team()
    for name in ("b-second", "a-first", "c-third"):
        await client.assistants.create("agent", metadata=team, name=name)
    page = await client.assistants.search(metadata=team, limit=2, response_format="object")
    assert len(page["assistants"]) == 2 and page["next"] == "2"
    last = await client.assistants.search(metadata=team, limit=2, offset=2, response_format="object")
    assert len(last["assistants"]) == 1 and last["next"] is None
    named = await client.assistants.search(metadata=team, sort_by="name", sort_order="asc", select=["name"])
    assert named == [{"name": "a-first"}, {"name": "b-second"}, {"name": "c-third"}]
    newest = await client.assistants.search(metadata=team)
    assert [a["name"] for a in newest] == ["c-third", "a-first", "b-second"]  # created_at, newest first
