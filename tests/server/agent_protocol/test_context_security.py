"""A run's ``context`` is untrusted: two tenants against the real server running the real agent graph.

The server (its own process) has two tenants' keys, the scripted model as the operator's endpoint,
and lowered sandbox maximums. A second scripted model plays an attacker's URL: it must never
receive a request. Tenant B tries every context trick against tenant A's workspace; A's files are
checked through REST afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import UnprocessableEntityError

from tests.server.agent_protocol.support import ServerProcess
from tests.support.scripted_openai import CODE, ROUTER, TESTS, Reply, ScriptedOpenAI

KEY_A = "alpha-" + uuid.uuid4().hex
KEY_B = "beta-" + uuid.uuid4().hex
SECRET = "tenant-a-secret-" + uuid.uuid4().hex[:8]
OPERATOR_KEY = "operator-key-" + uuid.uuid4().hex[:8]
MAX_WALL_S = 2.0


@pytest.fixture(scope="module")
def operator_llm() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as llm:
        yield llm


@pytest.fixture(scope="module")
def bait_llm() -> Iterator[ScriptedOpenAI]:
    """An endpoint a client names: it must never see a request (nor the operator's key)."""
    with ScriptedOpenAI(default='{"next": "answer", "answer": "pwned"}') as llm:
        yield llm


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, operator_llm: ScriptedOpenAI) -> Iterator[ServerProcess]:
    env = {
        "OPENAI_BASE_URL": operator_llm.url,
        "OPENAI_API_KEY": OPERATOR_KEY,
        "AGENTIC_MODEL": "scripted",
        "AGENTIC_API_KEYS": f"alpha:{KEY_A},beta:{KEY_B}",
        # The operator's maximums: no run may last longer than this, whatever tier it asks for.
        "AGENTIC_SANDBOX_MAX_LIMITS": json.dumps({"wall_seconds": MAX_WALL_S, "memory_mb": 1024}),
    }
    with ServerProcess(tmp_path_factory.mktemp("ctx-sec"), env, api_key=None) as srv:
        yield srv


@pytest.fixture
async def client_b(server: ServerProcess) -> AsyncIterator[LangGraphClient]:
    c = get_client(url=server.url, api_key=KEY_B)
    try:
        yield c
    finally:
        await c.aclose()


def _rest(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60)


@pytest.fixture(scope="module")
def victim_workspace(server: ServerProcess) -> str:
    """Tenant A's workspace holding one secret file."""
    with _rest(server, KEY_A) as a:
        ws = a.post("/v1/workspaces", json={"name": "victim"}).json()["id"]
        r = a.put(f"/v1/workspaces/{ws}/files/secret.py", json={"content": f"print('{SECRET}')\n"})
        assert r.status_code in (200, 201), r.text
    return str(ws)


def _victim_files(server: ServerProcess, ws: str) -> list[dict[str, Any]]:
    with _rest(server, KEY_A) as a:
        r = a.get(f"/v1/workspaces/{ws}/files")
        assert r.status_code == 200, r.text
        return list(r.json())


def _turn(text: str, ws: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "workspace_id": ws}


OPERATOR_FIELDS: list[dict[str, Any]] = [
    {"store": None},
    {"sandbox": None, "sandbox_backend": "local"},
    {"sandbox_backend": "gvisor"},
    {"web_search": None},
    {"apps": None},
    {"apps": {"host": "anything"}},
    {"search_read_pages": 5},
    {"model_api_key": "anything"},
    {"structured_output": False},
]


@pytest.mark.parametrize("context", OPERATOR_FIELDS, ids=lambda c: ",".join(c))
async def test_operator_fields_are_refused(
    client_b: LangGraphClient, server: ServerProcess, victim_workspace: str, context: dict[str, Any]
) -> None:
    tid = (await client_b.threads.create())["thread_id"]
    with pytest.raises(UnprocessableEntityError) as caught:
        await client_b.runs.create(
            tid, "agent", input=_turn("list the files", victim_workspace), context=context
        )
    body = caught.value.response.json()
    assert body["error"]["type"] == "invalid_context", body
    assert sorted(context)[0] in body["error"]["message"] and "clients may set" in body["error"]["message"]
    assert not (await client_b.runs.list(tid)), "a refused run must not be queued"


async def test_a_client_named_model_url_never_receives_a_request(
    client_b: LangGraphClient, server: ServerProcess, bait_llm: ScriptedOpenAI, victim_workspace: str
) -> None:
    tid = (await client_b.threads.create())["thread_id"]
    for context in ({"model_base_url": bait_llm.url}, {"model_base_url": bait_llm.url, "model_name": "x"}):
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client_b.runs.wait(tid, "agent", input=_turn("hello", victim_workspace), context=context)
        assert caught.value.response.status_code == 422
    assert bait_llm.requests == [] and bait_llm.authorizations == []


@pytest.mark.parametrize(
    "context",
    [
        {"max_attempts": 1000},
        {"max_attempts": "three"},
        {"max_steps": 0},
        {"tier": "huge"},
        {"library_set": "../../etc"},
        {"model_name": "gpt-5-expensive"},
        {"require_approval": {"nested": True}},
    ],
    ids=lambda c: json.dumps(c),
)
async def test_client_values_outside_the_operators_bounds_are_refused(
    client_b: LangGraphClient, context: dict[str, Any]
) -> None:
    tid = (await client_b.threads.create())["thread_id"]
    with pytest.raises(UnprocessableEntityError) as caught:
        await client_b.runs.create(tid, "agent", input={"messages": []}, context=context)
    message = caught.value.response.json()["error"]["message"]
    assert f"context.{next(iter(context))}" in message, message


async def test_published_context_schema_shows_only_client_fields(client_b: LangGraphClient) -> None:
    schemas = await client_b.assistants.get_schemas("agent")
    fields = set(schemas["context_schema"]["properties"])
    assert {"max_attempts", "tier", "require_approval"} <= fields
    assert not fields & {"model_base_url", "model_api_key", "sandbox_backend", "store", "sandbox"}


async def test_tenant_b_agent_cannot_write_or_read_tenant_a_workspace(
    client_b: LangGraphClient, server: ServerProcess, operator_llm: ScriptedOpenAI, victim_workspace: str
) -> None:
    before = _victim_files(server, victim_workspace)
    operator_llm.reset()
    operator_llm.add(Reply('{"next": "code", "task": "overwrite main.py"}', match=ROUTER))
    operator_llm.when(ROUTER, '{"next": "answer", "answer": "done"}')
    operator_llm.when(CODE, "```python\nprint(open('secret.py').read())\n```\n")
    operator_llm.when(TESTS, "```python\nassert True\n```\n")
    tid = (await client_b.threads.create())["thread_id"]
    allowed = {"max_attempts": 1, "generate_tests": False, "tier": "light"}
    result = await client_b.runs.wait(
        tid, "agent", input=_turn("write main.py", victim_workspace), context=allowed, raise_error=False
    )
    text = json.dumps(result)
    assert "WorkspaceNotFoundError" in text, text  # the same answer as for an id that does not exist
    assert SECRET not in text, "tenant B's run saw tenant A's file"
    assert _victim_files(server, victim_workspace) == before, "tenant B's run changed tenant A's workspace"
    with _rest(server, KEY_B) as b:
        assert b.get(f"/v1/workspaces/{victim_workspace}/files").status_code == 404
        assert all(ws["id"] != victim_workspace for ws in b.get("/v1/workspaces").json())


async def test_operator_key_goes_to_the_operator_endpoint_only(
    client_b: LangGraphClient, server: ServerProcess, operator_llm: ScriptedOpenAI
) -> None:
    operator_llm.reset()
    operator_llm.when(ROUTER, '{"next": "answer", "answer": "hello"}')
    tid = (await client_b.threads.create())["thread_id"]
    await client_b.runs.wait(tid, "agent", input={"messages": [{"role": "user", "content": "hi"}]})
    assert operator_llm.authorizations and set(operator_llm.authorizations) == {f"Bearer {OPERATOR_KEY}"}


async def test_agent_runs_hold_the_operators_maximums(
    client_b: LangGraphClient, server: ServerProcess, operator_llm: ScriptedOpenAI
) -> None:
    with _rest(server, KEY_B) as b:
        ws = b.post("/v1/workspaces", json={"name": "own"}).json()["id"]
    operator_llm.reset()
    operator_llm.add(Reply('{"next": "code", "task": "sleep"}', match=ROUTER))
    operator_llm.when(ROUTER, '{"next": "answer", "answer": "done"}')
    operator_llm.when(CODE, "```python\nimport time\ntime.sleep(8)\nprint('slept')\n```\n")
    tid = (await client_b.threads.create())["thread_id"]
    # The heavy tier allows 300 s; the operator's maximum is MAX_WALL_S.
    context = {"tier": "heavy", "max_attempts": 1, "generate_tests": False}
    attempts = [
        part.data
        async for part in client_b.runs.stream(
            tid, "agent", input=_turn("sleep a while", ws), context=context, stream_mode=["custom"]
        )
        if part.event == "custom" and isinstance(part.data, dict) and "attempt" in part.data
    ]
    assert attempts, "the Code Agent never ran"
    # Unclamped, the program would sleep its 8 s and exit by itself; clamped, it is killed at the
    # operator's maximum (how soon after depends on the host's load, so no bound on the duration).
    assert attempts[0]["reason"] == "timeout", attempts


async def test_tenant_b_search_agent_finds_nothing_of_tenant_a(
    client_b: LangGraphClient, server: ServerProcess, operator_llm: ScriptedOpenAI, victim_workspace: str
) -> None:
    operator_llm.reset()
    operator_llm.add(Reply('{"next": "search", "task": "tenant secret"}', match=ROUTER))
    operator_llm.when(ROUTER, '{"next": "answer", "answer": "searched"}')
    tid = (await client_b.threads.create())["thread_id"]
    result = await client_b.runs.wait(
        tid, "agent", input=_turn("find the secret", victim_workspace), raise_error=False
    )
    text = json.dumps(result)
    assert "search_agent" in text, text  # the Search Agent did run
    assert SECRET not in text, "tenant B's search returned tenant A's file"
    assert "no workspace" in text, text  # told the same as for an id that does not exist
