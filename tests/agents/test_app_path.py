"""The Code Agent's app path: write a page, host it, check it in the sandboxed browser, repair, reply.

Real parts: the scripted model behind ``langchain-openai``, the real version store, the real local
sandbox with its egress proxy routing ``<id>.apps.internal`` to the tenant's app, the real app
manager (as the server builds it, through its tenant view), and Debian's Chromium in the sandbox.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agents.context import Context
from agents.graph import build_graph
from sandbox.config import LocalSettings, SandboxSettings
from sandbox.guard import GuardedSandbox
from sandbox.registry import create_sandbox
from server.apps.access import LinkSigner
from server.apps.agent_view import TenantApps
from server.apps.config import AppSettings
from server.apps.manager import AppManager
from server.apps.store import AppStore
from server.tenancy import TenantStore
from tests.agents.scripts import fenced
from tests.agents.test_chat_path import turn
from tests.support.scripted_openai import CODE, REPAIR, ScriptedOpenAI
from tools.services import close_services
from workspace.sql import SqlVersionStore

pytestmark = pytest.mark.skipif(
    not os.access("/usr/lib/chromium/chromium", os.X_OK),
    reason="Chromium not installed (apt-get install chromium)",
)

COUNTER_REQUEST = (
    "Build a small web page that shows the current count and a button that adds one, host it, "
    "and check that the button works"
)


def page(
    script: str, body: str = '<p>Count: <span id="count">0</span></p><button id="add">Add one</button>'
) -> str:
    """A self-contained page, the shape the app prompt asks for."""
    head = "<!DOCTYPE html>\n<html><head><title>Counter</title></head>\n"
    return f"{head}<body>\n{body}\n<script>\n{script}\n</script>\n</body></html>\n"


COUNTER = page(
    "let count = 0;\n"
    "document.getElementById('add').addEventListener('click', () => {\n"
    "  count += 1; document.getElementById('count').textContent = count;\n});"
)
TYPO = COUNTER.replace("document.getElementById('add')", "documnt.getElementById('add')")
IDLE = page("let count = 0;\nfunction add() { count += 1; }\ndocument.getElementById('add').onclick = add;")
BY_TWO = COUNTER.replace("count += 1", "count += 2")


@pytest.fixture(scope="module")
async def hosting(
    store: SqlVersionStore, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    """The server's hosting pieces around the agents' store: app table, manager, guarded sandbox."""
    settings = SandboxSettings(local=LocalSettings(cgroup_pool_size=1))
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('app-path') / 'apps.db'}"
    async with create_sandbox(settings, "local") as backend:
        apps_store = AppStore.from_url(url)
        await apps_store.setup()
        guarded = GuardedSandbox.from_settings(backend, settings)
        manager = AppManager(
            apps_store, store, guarded, AppSettings(max_per_tenant=50), LinkSigner(b"k" * 32)
        )
        backend.egress.app_route = manager.egress_route  # type: ignore[attr-defined]
        try:
            yield {"manager": manager, "guarded": guarded, "apps_store": apps_store}
        finally:
            await manager.close()
            await apps_store.close()
            await close_services()  # the process-wide browser driver the probes started


@pytest.fixture
def app_context(
    make_context: Callable[..., Context], hosting: dict[str, Any], store: SqlVersionStore
) -> Callable[..., Context]:
    """A context as the server builds it for tenant "acme": scoped store, sandbox and apps."""

    def make(**overrides: Any) -> Context:
        scoped = {
            "store": TenantStore(store, "acme"),
            "sandbox": hosting["guarded"].for_owner("acme"),
            "apps": TenantApps(hosting["manager"], "acme"),
            "generate_tests": False,
        }
        return make_context(**{**scoped, **overrides})

    return make


def _link(reply: str) -> tuple[str, str]:
    found = re.search(r"Open it: (/apps/([0-9a-f]+)/\?agentic_link=\S+)", reply)
    assert found, reply
    return found.group(1), found.group(2)


async def _fetch(manager: AppManager, app_id: str) -> str:
    """The app's page, fetched from its own socket (the server's proxy is tested with the server)."""
    record = await manager.store.get(app_id)
    assert record is not None
    handle = await manager.ensure_running(record)
    transport = httpx.AsyncHTTPTransport(uds=str(handle.socket_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return (await client.get("/")).text


async def test_a_page_is_hosted_checked_and_linked(
    llm: ScriptedOpenAI, app_context: Callable[..., Context], hosting: dict[str, Any], store: SqlVersionStore
) -> None:
    llm.when(CODE, fenced(COUNTER, "html", prose="Here is the page:"))
    final, events = await turn(app_context(), COUNTER_REQUEST)
    assert [(e["passed"], e["check"]) for e in events] == [(True, "passed")], events
    assert "You write small, complete web pages" in str(llm.requests_matching(CODE)[0])
    reply = final["messages"][-1].content
    assert reply.startswith("Done: index.html is hosted and passed its browser check on attempt 1 of 3."), (
        reply
    )
    link, app_id = _link(reply)
    assert final["app_ids"] == [app_id] and events[0]["app_id"] == app_id
    manager: AppManager = hosting["manager"]
    assert manager.signer.check(app_id, link.split("agentic_link=", 1)[1]) is not None  # a valid signed link
    assert (
        "clicked 'Add one': the page changed" in reply and "clicked 'Add one' again: numbers 1 -> 2" in reply
    )
    assert 'id="count"' in await _fetch(manager, app_id)
    assert (await store.read(final["workspace_id"], "index.html")).content == COUNTER
    (record,) = [r for r in await manager.store.list("acme") if r.id == app_id]
    assert record.spec["files"]["index.html"] == 1  # hosted from the version the agent wrote


@pytest.mark.parametrize(
    ("broken", "problem", "detail"),
    [
        (TYPO, "JSError", "documnt is not defined"),
        (IDLE, "ExpectationFailed", "no button changed a number on the page by 1"),
        (BY_TWO, "ExpectationFailed", "numbers 0 -> 2"),
    ],
    ids=["js-error", "button-does-nothing", "adds-two-not-one"],
)
async def test_a_broken_page_is_repaired_and_the_failed_app_removed(
    llm: ScriptedOpenAI,
    app_context: Callable[..., Context],
    hosting: dict[str, Any],
    broken: str,
    problem: str,
    detail: str,
) -> None:
    llm.add(fenced(broken, "html"))  # the first draft
    llm.when(REPAIR, "Cause: the handler was wrong.\n" + fenced(COUNTER, "html"))
    before = {r.id for r in await hosting["manager"].store.list("acme")}
    final, events = await turn(app_context(), COUNTER_REQUEST)
    assert [(e["passed"], e["error_class"]) for e in events] == [(False, problem), (True, None)], events
    repair = str(llm.requests_matching(REPAIR)[0]["messages"][-1]["content"])
    assert f"The browser check found: {problem}" in repair and detail in repair, repair
    assert broken.strip() in repair  # the failing page is in the prompt
    reply = final["messages"][-1].content
    assert reply.startswith("Done: index.html is hosted and passed its browser check on attempt 2 of 3."), (
        reply
    )
    _, app_id = _link(reply)
    now = {r.id for r in await hosting["manager"].store.list("acme")}
    assert now - before == {app_id}, "the failed attempt's app was removed, the passing one kept"


async def test_a_generic_button_that_does_nothing_fails_and_the_reply_never_claims_it_works(
    llm: ScriptedOpenAI, app_context: Callable[..., Context], hosting: dict[str, Any]
) -> None:
    idle = page("function go() { let x = 1; }", body='<h1>Greeter</h1><button onclick="go()">Greet</button>')
    llm.when(CODE, fenced(idle, "html"))
    llm.when(REPAIR, "Cause: unsure.\n" + fenced(idle.replace("let x = 1;", "let x = 2;"), "html"))
    before = {r.id for r in await hosting["manager"].store.list("acme")}
    final, events = await turn(
        app_context(max_attempts=2), "Make a web page with a Greet button that greets me and host it"
    )
    assert [(e["passed"], e["error_class"]) for e in events] == [(False, "NoEffect"), (False, "NoEffect")]
    reply = final["messages"][-1].content
    assert reply.startswith("Failed: index.html still fails its browser check after 2 of 2 attempts"), reply
    assert "clicking 'Greet' changed nothing on the page" in reply
    assert "Open it" not in reply and "agentic_link" not in reply and "passed" not in reply
    assert {r.id for r in await hosting["manager"].store.list("acme")} == before, "no failed app left running"
    assert final.get("app_ids") == []


async def test_without_apps_in_the_context_the_agent_says_hosting_is_unavailable(
    llm: ScriptedOpenAI, app_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    llm.when(CODE, fenced(COUNTER, "html"))
    final, events = await turn(app_context(apps=None), COUNTER_REQUEST)
    reply = final["messages"][-1].content
    assert reply.startswith("Not hosted: app hosting is unavailable here"), reply
    assert "langgraph dev" in reply and "neither hosted nor checked" in reply, reply
    assert events == [] and final.get("app_ids") == []
    assert (await store.read(final["workspace_id"], "index.html")).content == COUNTER  # the page is kept


async def test_a_follow_up_changes_the_hosted_page(
    llm: ScriptedOpenAI, app_context: Callable[..., Context]
) -> None:
    graph = build_graph().compile(checkpointer=InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": "follow-up"}}
    llm.when(CODE, fenced(COUNTER, "html"))
    await graph.ainvoke({"messages": [HumanMessage(COUNTER_REQUEST)]}, config, context=app_context())
    llm.reset()
    bigger = COUNTER.replace(
        "<title>Counter</title>", "<title>Counter</title><style>button{font-size:2em}</style>"
    )
    llm.when(CODE, fenced(bigger, "html"))
    final = await graph.ainvoke(
        {"messages": [HumanMessage("Now make the button bigger")]}, config, context=app_context()
    )
    assert "Current content of index.html" in str(llm.requests_matching(CODE)[0])
    reply = final["messages"][-1].content
    assert reply.startswith("Done: index.html is hosted and passed its browser check"), reply
    assert len(final["app_ids"]) == 2  # both apps of the conversation are listed
    llm.reset()
    llm.when(CODE, fenced("def total(xs):\n    return sum(xs)\n\nprint(total([1, 2]))\n"))
    third = await graph.ainvoke(
        {
            "messages": [
                HumanMessage("Now write a Python function total(xs) returning the sum; print total([1, 2])")
            ]
        },
        config,
        context=app_context(),
    )
    reply = third["messages"][-1].content
    assert reply.startswith("Done: main.py ran successfully"), reply  # a new program, not the page
    assert "You write small, complete Python 3 programs" in str(llm.requests_matching(CODE)[0])


async def test_a_tenant_at_its_app_limit_gets_a_plain_answer_without_repairs(
    llm: ScriptedOpenAI, app_context: Callable[..., Context], hosting: dict[str, Any], store: SqlVersionStore
) -> None:
    full = AppManager(
        hosting["apps_store"], store, hosting["guarded"], AppSettings(max_per_tenant=0), LinkSigner(b"k" * 32)
    )
    llm.when(CODE, fenced(COUNTER, "html"))
    final, events = await turn(app_context(apps=TenantApps(full, "acme")), COUNTER_REQUEST)
    reply = final["messages"][-1].content
    assert reply.startswith("Not hosted: the app was not hosted: this tenant already hosts"), reply
    assert events == [] and len(llm.requests_matching(CODE)) == 1  # no repair can change a limit


PY_APP = """import http.server, os
PAGE = b'<html><body><p id="g">Hi</p><button onclick="g.textContent = 42">Greet</button></body></html>'
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Type', 'text/html')
        self.send_header('Content-Length', str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)
        BUG
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


async def test_a_python_app_that_raises_while_serving_is_repaired(
    llm: ScriptedOpenAI, app_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    llm.add(fenced(PY_APP.replace("BUG", "raise KeyError('visits')")))
    llm.when(REPAIR, "Cause: a missing key.\n" + fenced(PY_APP.replace("BUG", "pass")))
    final, events = await turn(app_context(), "Build a small Python web app with a Greet button, and host it")
    assert [(e["passed"], e["error_class"]) for e in events] == [(False, "AppError"), (True, None)], events
    repair = str(llm.requests_matching(REPAIR)[0]["messages"][-1]["content"])
    assert "the app raised KeyError: 'visits' while serving" in repair and "Traceback" in repair, repair
    assert "You write small, complete web apps in Python 3" in str(llm.requests_matching(REPAIR)[0])
    reply = final["messages"][-1].content
    assert reply.startswith("Done: app.py is hosted and passed its browser check on attempt 2 of 3."), reply
    assert "```python" in reply


SERVES_FILE = """import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open('index.html', 'rb').read()
        self.send_response(200)
        self.send_header('Content-Type', 'text/html')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


async def test_a_python_app_and_its_page_are_written_together_and_hosted(
    llm: ScriptedOpenAI, app_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    reply = f"app.py\n```python\n{SERVES_FILE}```\n\nindex.html\n```html\n{COUNTER}```\n"
    llm.when(CODE, reply)
    final, events = await turn(app_context(), "Build a Python web app: a counter page with a button, host it")
    draft = str(llm.requests_matching(CODE)[0]["messages"][-1]["content"])
    assert "Write the files app.py and index.html, each in its own code block" in draft, draft
    assert [(e["passed"], e["check"]) for e in events] == [(True, "passed")], events
    assert final["messages"][-1].content.startswith("Done: app.py is hosted and passed its browser check")
    assert (await store.read(final["workspace_id"], "index.html")).content == COUNTER
    assert set(final["files"]) >= {"app.py", "index.html"}
