"""The official JS SDK (``@langchain/langgraph-sdk``) in real Chromium, from a page of another origin.

What a browser front-end such as agent-chat-ui does: a chat turn streamed token by token, a page
reload in the middle of a run and a rejoin from the last event seen (the run id comes from the
``Content-Location`` header, which CORS must expose), and a cancel. The SDK comes from npm (pinned in
``browser/package.json``, installed once by ``make test`` or here, then cached) and is bundled by
esbuild; the test skips, saying why, when npm, the registry or Chromium is unavailable.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.server.agent_protocol.support import ServerProcess, free_port
from tests.support.scripted_openai import RESPOND, ROUTER, ScriptedOpenAI

HERE = Path(__file__).parent / "browser"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ANSWER = "Hello from the agent, token by token."


def _fresh(target: Path, *sources: Path) -> bool:
    return target.exists() and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources)


@pytest.fixture(scope="session")
def sdk_page_dir() -> Path:
    """``browser/`` with ``dist/sdk.js`` built (npm ci and esbuild only when inputs changed)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (Debian package npm): the JS SDK cannot be fetched")
    installed = HERE / "node_modules" / ".package-lock.json"
    if not _fresh(installed, HERE / "package.json", HERE / "package-lock.json"):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            pytest.skip(f"npm ci failed (registry unreachable?): {done.stderr.strip()[-500:]}")
    bundle = HERE / "dist" / "sdk.js"
    if not _fresh(bundle, installed, HERE / "entry.js"):
        subprocess.run(
            [
                str(HERE / "node_modules" / ".bin" / "esbuild"),
                "entry.js",
                "--bundle",
                "--format=esm",
                "--outfile=dist/sdk.js",
                "--log-level=warning",
            ],
            cwd=HERE,
            check=True,
            timeout=120,
        )
    return HERE


@pytest.fixture(scope="session")
def page_origin(sdk_page_dir: Path) -> Iterator[str]:
    """A static server on another loopback port: the page's origin is not the API's."""
    handler = functools.partial(_QuietHandler, directory=str(sdk_page_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Real Chromium through Playwright's async API (the suite's event loop; the system Chromium)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def _open(browser: Browser, page_origin: str, server: ServerProcess) -> Page:
    page = await browser.new_page()
    page.on("console", lambda msg: print("page:", msg.text))
    query = f"api={server.url}&key={server.api_key}"
    await page.goto(f"{page_origin}/index.html?{query}")
    await page.wait_for_function("window.sdkReady === true")
    return page


CHAT_TURN = """async () => {
  const thread = await client.threads.create();
  const parts = [];
  let created = null;
  for await (const part of client.runs.stream(thread.thread_id, "agent", {
    input: { messages: [{ role: "user", content: "say hello" }] },
    streamMode: ["values", "messages-tuple"],
    onRunCreated: (meta) => { created = meta; },
  })) parts.push(part);
  const found = await client.threads.search({ metadata: { graph_id: "agent" }, limit: 1000 });
  const state = await client.threads.getState(thread.thread_id);
  return { threadId: thread.thread_id, created, parts, state,
           listed: found.some((t) => t.thread_id === thread.thread_id) };
}"""


async def test_chat_turn_from_another_origin(
    browser: Browser, page_origin: str, agent_server: ServerProcess, scripted_llm: ScriptedOpenAI
) -> None:
    scripted_llm.reset()
    scripted_llm.when(ROUTER, json.dumps({"next": "answer", "answer": ANSWER}))
    scripted_llm.when(RESPOND, ANSWER)  # the reply itself is streamed by the respond node
    page = await _open(browser, page_origin, agent_server)
    try:
        result = await page.evaluate(CHAT_TURN)
    finally:
        await page.close()
    events = [p["event"] for p in result["parts"]]
    assert events[0] == "metadata" and "error" not in events, result["parts"]
    assert result["created"] and result["created"]["thread_id"] == result["threadId"]  # Content-Location read
    assert result["created"]["run_id"] == result["parts"][0]["data"]["run_id"]
    assert "messages" in events  # messages-tuple parts, as the UI renders them
    final = [p["data"] for p in result["parts"] if p["event"] == "values"][-1]
    assert ANSWER in final["messages"][-1]["content"]
    assert result["state"]["values"]["messages"][0]["content"] == "say hello"
    assert result["listed"]  # the UI's thread list searches by graph_id


START_STREAM = """(threadId) => {
  // Not awaited: the page reloads in the middle of this stream, as a user would.
  (async () => {
    for await (const part of client.runs.stream(threadId, "agent", {
      input: { ticks: 40, delay: 0.1 },
      streamMode: ["custom"],
      onRunCreated: (meta) => sessionStorage.setItem("run", meta.run_id),
    })) {
      if (part.id) sessionStorage.setItem("last", part.id);
      if (part.event === "custom") sessionStorage.setItem("ticks", String(part.data.tick + 1));
    }
  })();
}"""

REJOIN = """async (threadId) => {
  const runId = sessionStorage.getItem("run");
  const last = sessionStorage.getItem("last");
  const seen = Number(sessionStorage.getItem("ticks"));
  const parts = [];
  const options = { lastEventId: last, streamMode: ["custom"] };
  for await (const part of client.runs.joinStream(threadId, runId, options)) parts.push(part);
  const run = await client.runs.get(threadId, runId);
  return { runId, seen, parts, status: run.status };
}"""

CANCEL = """async (threadId) => {
  const run = await client.runs.create(threadId, "agent", { input: { ticks: 400, delay: 0.05 } });
  await new Promise((r) => setTimeout(r, 300));
  await client.runs.cancel(threadId, run.run_id, true);
  return (await client.runs.get(threadId, run.run_id)).status;
}"""


async def test_reload_rejoin_and_cancel_from_another_origin(
    browser: Browser, page_origin: str, sample_server: ServerProcess
) -> None:
    page = await _open(browser, page_origin, sample_server)
    try:
        tid = await page.evaluate("async () => (await client.threads.create()).thread_id")
        await page.evaluate(START_STREAM, tid)
        await page.wait_for_function("Number(sessionStorage.getItem('ticks')) >= 5", timeout=30_000)
        await page.reload()  # drops the stream; the run goes on (on_disconnect defaults to continue)
        await page.wait_for_function("window.sdkReady === true")
        rejoined = await page.evaluate(REJOIN, tid)
        assert rejoined["status"] == "success"
        ticks = [p["data"]["tick"] for p in rejoined["parts"] if p["event"] == "custom"]
        # Every tick after the last one seen before the reload, none twice, none lost.
        assert ticks == list(range(rejoined["seen"], 40)), (rejoined["seen"], ticks)
        assert await page.evaluate(CANCEL, tid) == "interrupted"
    finally:
        await page.close()
