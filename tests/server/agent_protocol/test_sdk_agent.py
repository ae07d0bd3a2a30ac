"""langgraph-sdk against our server running the real agent graph on the scripted model.

Real parts end to end: uvicorn, the Agent Protocol routes, the run manager, the agent graph with its
checkpointer, langchain-openai talking to the scripted OpenAI server, the local sandbox and the
workspace store (files are checked through the ``/v1`` REST API).
"""

from __future__ import annotations

from typing import Any

import httpx
from langgraph_sdk.client import LangGraphClient

from tests.server.agent_protocol.support import ServerProcess
from tests.support.scripted_openai import ScriptedOpenAI

MODES = ["values", "messages-tuple", "custom"]


def _workspace(server: ServerProcess) -> str:
    r = httpx.post(
        f"{server.url}/v1/workspaces", json={"name": "ap-test"}, headers=server.headers, timeout=30
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _user(text: str, workspace_id: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "workspace_id": workspace_id}


async def test_streamed_coding_turn(
    agent_client: LangGraphClient, agent_server: ServerProcess, code_script: ScriptedOpenAI
) -> None:
    ws = _workspace(agent_server)
    tid = (await agent_client.threads.create())["thread_id"]
    parts = [
        p
        async for p in agent_client.runs.stream(
            tid, "agent", input=_user("print hello", ws), stream_mode=MODES
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and "error" not in events, [p for p in parts if p.event == "error"]
    tokens = [p.data[0] for p in parts if p.event == "messages"]
    streamed = [t["content"] for t in tokens if t["type"] == "AIMessageChunk" and t["content"]]
    assert len(streamed) > 2, tokens  # the model's reply arrived token by token
    assert all(
        isinstance(p.data[1], dict) and "langgraph_node" in p.data[1] for p in parts if p.event == "messages"
    )
    attempts = [p.data for p in parts if p.event == "custom" and "attempt" in p.data]
    assert attempts and attempts[-1]["attempt"] == 1 and attempts[-1]["passed"] is True
    final = [p.data for p in parts if p.event == "values"][-1]
    assert "Done" in final["messages"][-1]["content"]
    files = httpx.get(f"{agent_server.url}/v1/workspaces/{ws}/files", headers=agent_server.headers).json()
    assert files, "the Code Agent wrote no file"
    thread = await agent_client.threads.get(tid)
    assert thread["status"] == "idle"


async def test_approval_interrupt_and_resume(
    agent_client: LangGraphClient, agent_server: ServerProcess, code_script: ScriptedOpenAI
) -> None:
    ws = _workspace(agent_server)
    tid = (await agent_client.threads.create())["thread_id"]
    first = await agent_client.runs.wait(
        tid, "agent", input=_user("print hello", ws), context={"require_approval": True}
    )
    interrupts = first["__interrupt__"]
    assert interrupts[0]["value"]["type"] == "approval" and "print('hello')" in interrupts[0]["value"]["code"]
    assert (await agent_client.threads.get(tid))["status"] == "interrupted"
    parts = [
        p
        async for p in agent_client.runs.stream(
            tid,
            "agent",
            command={"resume": {"action": "approve"}},
            context={"require_approval": True},
            stream_mode=MODES,
        )
    ]
    attempts = [p.data for p in parts if p.event == "custom" and "attempt" in p.data]
    assert attempts and attempts[-1]["passed"] is True
    state = await agent_client.threads.get_state(tid)
    assert "Done" in state["values"]["messages"][-1]["content"]
    assert (await agent_client.threads.get(tid))["status"] == "idle"
    history = await agent_client.threads.get_history(tid, limit=50)
    assert len(history) > 3
