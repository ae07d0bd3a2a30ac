"""``langgraph dev`` loads langgraph.json, and langgraph-sdk runs the graph against the scripted model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.agents.scripts import answer, fenced, route
from tests.support.scripted_openai import CODE, ROUTER, Reply, ScriptedOpenAI

ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = Path(sys.executable).parent / "langgraph"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dev_server(llm_server: ScriptedOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``langgraph dev`` on a free port, configured only through environment variables."""
    if not LANGGRAPH.exists():
        pytest.skip("langgraph-cli is not installed (pip install 'langgraph-cli[inmem]')")
    workdir = tmp_path_factory.mktemp("langgraph-dev")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTIC_", "OPENAI_", "DATABASE_URL"))}
    env.update(
        OPENAI_BASE_URL=llm_server.url,
        OPENAI_API_KEY="test-key",
        AGENTIC_MODEL="scripted",
        AGENTIC_DATA_DIR=str(workdir / "data"),
        AGENTIC_GENERATE_TESTS="false",
        AGENTIC_SANDBOX_BACKEND="local",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
    )
    argv = [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--port", str(port)]
    argv += ["--config", str(ROOT / "langgraph.json")]
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail("langgraph dev exited:\n" + (workdir / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("langgraph dev did not start:\n" + (workdir / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        # langgraph dev keeps its in-memory runtime's state in the working directory.
        subprocess.run(["rm", "-rf", str(ROOT / ".langgraph_api")], check=False)


async def test_sdk_runs_the_graph(dev_server: str, llm: ScriptedOpenAI) -> None:
    llm.add(
        Reply(route("code", "Print 6 * 7 in Python."), match=ROUTER),
        Reply(fenced("print(6 * 7)\n"), match=CODE),
        Reply(answer("It prints 42."), match=ROUTER),
    )
    client = get_client(url=dev_server)
    assistants = await client.assistants.search(graph_id="agent")
    assert assistants, "the graph named in langgraph.json is served"
    assistant_id = assistants[0]["assistant_id"]
    drawn = await client.assistants.get_graph(assistant_id)
    node_ids = {node["id"] for node in drawn["nodes"]}
    assert {"task_agent", "code_agent", "search_agent", "summarize_agent", "reply"} <= node_ids
    schemas = await client.assistants.get_schemas(assistant_id)
    assert schemas["output_schema"] and "code_result" in schemas["output_schema"]["properties"]

    thread = await client.threads.create()
    custom: list[Any] = []
    values: dict[str, Any] = {}
    async for part in client.runs.stream(
        thread["thread_id"],
        assistant_id,
        input={"messages": [{"role": "human", "content": "python: print 6 * 7"}]},
        stream_mode=["values", "custom"],
    ):
        if part.event == "custom":
            custom.append(part.data)
        elif part.event == "values":
            values = part.data
        elif part.event == "error":
            pytest.fail(f"run failed: {part.data}")
    summaries = [(e.get("error_class"), e.get("summary"), e.get("reason")) for e in custom]
    assert [(e["attempt"], e["passed"]) for e in custom] == [(1, True)], (summaries, llm.unmatched[-3:])
    assert values["messages"][-1]["content"].startswith("Done: main.py ran successfully")
    assert "```\n42\n```" in values["messages"][-1]["content"]
    assert "main.py" in values["files"]
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["last_run"]["passed"] is True


async def test_an_app_request_under_langgraph_dev_says_hosting_is_unavailable(
    dev_server: str, llm: ScriptedOpenAI
) -> None:
    page = "<!DOCTYPE html>\n<html><body><button onclick=\"this.textContent='1'\">0</button></body></html>\n"
    llm.add(Reply(fenced(page, "html"), match=CODE))
    client = get_client(url=dev_server)
    thread = await client.threads.create()
    result = await client.runs.wait(
        thread["thread_id"],
        "agent",
        input={"messages": [{"role": "human", "content": "Build a counter web page and host it"}]},
    )
    reply = result["messages"][-1]["content"]  # type: ignore[call-overload,index]
    assert reply.startswith("Not hosted: app hosting is unavailable here"), reply
    assert "langgraph dev" in reply and "index.html" in reply, reply
