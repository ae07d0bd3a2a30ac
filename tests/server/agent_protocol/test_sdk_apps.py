"""Hosted apps through the real server's Agent Protocol: the run's context carries the server's app
manager scoped to the run's tenant, the Code Agent hosts and checks the page, the reply's signed
link opens it through ``/apps/`` without an API key, and the app's logs show the check's visit.

The scripted model writes the page; the server, its sandbox, egress proxy, app manager and the
sandboxed Chromium are real.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from langgraph_sdk.client import LangGraphClient

from tests.server.agent_protocol.support import ServerProcess
from tests.support.app_hosts import LoopbackAppHosts
from tests.support.scripted_openai import CODE, ScriptedOpenAI

PAGE = """<!DOCTYPE html>
<html><head><title>Counter</title></head>
<body><p>Count: <span id="count">0</span></p><button id="add">Add one</button>
<script>
let count = 0;
const shown = document.getElementById('count');
document.getElementById('add').onclick = () => { count += 1; shown.textContent = count; };
</script></body></html>
"""
REQUEST = "Build a small web page that shows the current count and a button that adds one, and host it"


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_the_agent_hosts_a_checked_page_whose_link_opens_through_the_proxy(
    agent_client: LangGraphClient, agent_server: ServerProcess, scripted_llm: ScriptedOpenAI
) -> None:
    scripted_llm.reset()
    scripted_llm.when(CODE, f"Here is the page:\n```html\n{PAGE}```\n")
    tid = (await agent_client.threads.create())["thread_id"]
    parts = [
        p
        async for p in agent_client.runs.stream(
            tid, "agent", input=_user(REQUEST), stream_mode=["values", "custom"]
        )
    ]
    assert "error" not in [p.event for p in parts], [p.data for p in parts if p.event == "error"]
    attempts = [p.data for p in parts if p.event == "custom" and "attempt" in p.data]
    assert [(a["passed"], a["check"]) for a in attempts] == [(True, "passed")], attempts
    final = [p.data for p in parts if p.event == "values"][-1]
    reply = final["messages"][-1]["content"]
    assert reply.startswith("Done: index.html is hosted and passed its browser check"), reply
    found = re.search(r"Open it: (/apps/([0-9a-f]+)/\?agentic_link=\S+)", reply)
    assert found, reply
    link, app_id = found.group(1), found.group(2)
    assert final["app_ids"] == [app_id] and attempts[0]["app_id"] == app_id

    # A browser on the API's origin is sent to the app's own origin (*.apps.localhost, which browsers
    # resolve to loopback by themselves; httpx needs LoopbackAppHosts for it).
    transport = LoopbackAppHosts()
    with httpx.Client(
        base_url=agent_server.url, timeout=30, follow_redirects=True, transport=transport
    ) as anyone:
        refused = anyone.get(f"/apps/{app_id}/")
        assert (
            refused.status_code == 401 and refused.url.host == f"{app_id}.apps.localhost"
        )  # no link: refused
        opened = anyone.get(link)  # the signed link sets the app's cookie and redirects
        assert opened.status_code == 200 and '<span id="count">0</span>' in opened.text, opened.text
    with httpx.Client(base_url=agent_server.url, timeout=30, headers=agent_server.headers) as owner:
        listed = {a["id"]: a for a in owner.get("/v1/apps").json()}
        assert listed[app_id]["name"] == "index.html" and listed[app_id]["running"] is True
        logs = owner.get(f"/v1/apps/{app_id}/logs").text
        assert "[agentic] app started" in logs and '"GET / HTTP/1.1" 200' in logs, logs
