"""The Search Agent reads the pages its web search found, in the sandboxed browser.

The "web" is a page served by this test on 127.0.0.2, which the egress allow-list admits; a second
result points at a private address, which the egress proxy refuses before any packet leaves (the
refusal is decided where the proxy decides). Chromium runs in the real local sandbox.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from agents.context import Context
from sandbox.base import Sandbox
from sandbox.config import LocalSettings, SandboxSettings
from sandbox.registry import create_sandbox
from tests.agents.scripts import route
from tests.agents.test_chat_path import turn
from tests.support.scripted_openai import ROUTER, Reply, ScriptedOpenAI
from tools.search_backends import LocalCorpusSearch, WebResult
from tools.services import close_services

pytestmark = pytest.mark.skipif(
    not os.access("/usr/lib/chromium/chromium", os.X_OK),
    reason="Chromium not installed (apt-get install chromium)",
)

ALLOWED = "127.0.0.2"
ARTICLE = "Bubblewrap sandboxes start in four milliseconds on this host, said only the article page."


class _Article(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<html><head><title>Sandbox notes</title></head><body><p>{ARTICLE}</p></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((ALLOWED, 0), _Article)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{ALLOWED}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
async def allowing_sandbox() -> AsyncIterator[Sandbox]:
    """The local sandbox whose egress allow-list admits the test's page address."""
    async with create_sandbox(
        SandboxSettings(local=LocalSettings(cgroup_pool_size=1), egress_allow=[ALLOWED]), "local"
    ) as box:
        yield box
    await close_services()


async def test_the_search_agent_reads_the_result_pages(
    llm: ScriptedOpenAI,
    make_context: Callable[..., Context],
    allowing_sandbox: Sandbox,
    site: str,
) -> None:
    results = [
        WebResult(title="Sandbox notes", url=f"{site}/notes", snippet="sandbox start time notes"),
        WebResult(
            title="Sandbox internals", url="http://10.1.2.3/internal", snippet="sandbox start internals"
        ),
    ]
    llm.add(Reply(route("search", "sandbox start time"), match=ROUTER))
    llm.when(ROUTER, route("answer", answer="see above"))
    ctx = make_context(sandbox=allowing_sandbox, web_search=LocalCorpusSearch(results), search_read_pages=2)
    final, _ = await turn(ctx, "search the web for the sandbox start time")
    found = next(m for m in final["messages"] if getattr(m, "name", None) == "search_agent").content
    assert f"[1] Sandbox notes - {site}/notes" in found, found
    assert f"Page: {ARTICLE}" in found, "the page's own text joins its note"
    assert "http://10.1.2.3/internal: the platform's egress proxy refused" in found, found
    assert "private" in found, found
    notes = {n["source"]: n["snippet"] for n in final["search_notes"]}
    assert ARTICLE in notes[f"{site}/notes"] and "Page:" not in notes["http://10.1.2.3/internal"]


async def test_no_pages_are_read_when_the_operator_sets_none(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], allowing_sandbox: Sandbox, site: str
) -> None:
    results = [WebResult(title="Sandbox notes", url=f"{site}/notes", snippet="sandbox start time notes")]
    llm.add(Reply(route("search", "sandbox start time"), match=ROUTER))
    llm.when(ROUTER, route("answer", answer="see above"))
    ctx = make_context(sandbox=allowing_sandbox, web_search=LocalCorpusSearch(results), search_read_pages=0)
    final, _ = await turn(ctx, "search the web for the sandbox start time")
    found = next(m for m in final["messages"] if getattr(m, "name", None) == "search_agent").content
    assert "Sandbox notes" in found and "Page:" not in found
