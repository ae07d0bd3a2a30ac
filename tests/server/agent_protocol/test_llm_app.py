"""The embedded model builds, hosts and checks a counter page through the real server (marked ``llm``).

Everything is real: uvicorn serving the agent graph, the embedded Qwen model in the server process,
langgraph-sdk as the client, the local sandbox, the app manager and the sandboxed browser check.
The test then opens the reply's link itself in Debian's Chromium through the server's ``/apps/``
proxy, reads the count, clicks the button and sees the count go up by one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph_sdk import get_client
from playwright.async_api import Page, async_playwright

from tests.server.agent_protocol.support import ServerProcess

CHROMIUM = "/usr/bin/chromium"
REQUEST = (
    "Build a small web page that shows the current count and a button that adds one, host it, "
    "and check that the button works"
)
_NUMBER = re.compile(r"-?\d+")

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Chromium is not installed (apt)"),
    pytest.mark.skipif(bool(os.environ.get("OPENAI_BASE_URL")), reason="runs the embedded model only"),
]


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server on the embedded model (no OPENAI_BASE_URL)."""
    with ServerProcess(tmp_path_factory.mktemp("llm-app")) as server:
        yield server


async def _numbers(page: Page) -> list[int]:
    return [int(n) for n in _NUMBER.findall(await page.inner_text("body"))]


async def test_the_embedded_model_builds_a_counter_page_whose_link_works(llm_server: ServerProcess) -> None:
    client = get_client(url=llm_server.url, api_key=llm_server.api_key, timeout=900)
    try:
        thread = await client.threads.create()
        parts = [
            p
            async for p in client.runs.stream(
                thread["thread_id"],
                "agent",
                input={"messages": [{"role": "user", "content": REQUEST}]},
                stream_mode=["values", "custom"],
            )
        ]
    finally:
        await client.aclose()
    assert "error" not in [p.event for p in parts], [p.data for p in parts if p.event == "error"]
    attempts: list[dict[str, Any]] = [p.data for p in parts if p.event == "custom" and "attempt" in p.data]
    reply = [p.data for p in parts if p.event == "values"][-1]["messages"][-1]["content"]
    assert attempts and attempts[-1]["check"] == "passed", (attempts, reply)
    assert reply.startswith("Done: index.html is hosted and passed its browser check"), reply
    found = re.search(r"Open it: (/apps/[0-9a-f]+/\?agentic_link=\S+)", reply)
    assert found, reply

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = await browser.new_page()
            response = await page.goto(llm_server.url + found.group(1))
            assert response is not None and response.status == 200
            assert "agentic_link" not in page.url  # the signed link set the app's cookie
            before = await _numbers(page)
            await page.locator("button, input[type=button], input[type=submit]").first.click()
            await page.wait_for_timeout(500)
            after = await _numbers(page)
        finally:
            await browser.close()
    assert len(before) == len(after), (before, after)
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(moved) == 1 and moved[0][1] == moved[0][0] + 1, (before, after)
