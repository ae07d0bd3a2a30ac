"""The web UI in Debian's Chromium (Playwright): submit a task, watch it stream, open a file's diff.

The server is the real one (agent graph on the scripted model, local sandbox, SQLite store); the
screenshot lands in ``test-artifacts/ui_chat.png`` for a human to look at.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.server.agent_protocol.support import ServerProcess
from tests.support.scripted_openai import CODE, ROUTER, TESTS, Reply, ScriptedOpenAI

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Chromium is not installed (apt)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless (Playwright cannot download browsers here)."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


def _script_turn(llm: ScriptedOpenAI, code: str, answer: str) -> None:
    llm.reset()
    llm.add(Reply('{"next": "code", "task": "write the program"}', match=ROUTER))
    llm.when(ROUTER, json.dumps({"next": "answer", "answer": answer}))
    llm.when(CODE, f"Here is the program:\n```python\n{code}\n```\n")
    llm.when(TESTS, "```python\nassert True\n```\n")


async def _submit(page: Page, task: str) -> None:
    await page.fill("#task", task)
    await page.click("#send")
    await expect(page.locator("#send")).to_be_enabled(timeout=60_000)


async def test_chat_streams_answer_attempts_and_diff(
    browser: Browser, agent_server: ServerProcess, scripted_llm: ScriptedOpenAI
) -> None:
    context = await browser.new_context(viewport={"width": 1360, "height": 860})
    await context.add_init_script(f"localStorage.setItem('agentic.apiKey', {agent_server.api_key!r});")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(agent_server.url + "/")
    await expect(page.locator("#workspace-select option")).not_to_have_count(0)

    _script_turn(scripted_llm, "print('hello')", "Done: the program prints hello.")
    await _submit(page, "Write a program that prints hello")
    # The reply is built from the run's outcome (issue 9), not from the router's text.
    await expect(page.locator(".msg.ai").last).to_contain_text("Done: main.py ran successfully")
    await expect(page.locator(".msg.ai").last).to_contain_text("hello")
    await expect(page.locator(".event.attempt .badge.pass").first).to_be_visible()
    await expect(page.locator(".msg.user")).to_have_count(1)

    _script_turn(scripted_llm, "name = 'world'\nprint('hello,', name)", "Done: it now greets the world.")
    await _submit(page, "Make it greet the world")
    await expect(page.locator(".msg.ai").last).to_contain_text("hello, world")

    file_item = page.locator("#files li[data-path]").first
    await expect(file_item).to_be_visible()
    await file_item.click()
    await expect(page.locator("#file-view")).to_be_visible()
    await expect(page.locator("#diff .add").first).to_be_visible()
    await expect(page.locator("#diff .del").first).to_be_visible()
    assert await page.locator("#versions button").count() >= 2

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "ui_chat.png"), full_page=False)
    assert not errors, errors
    await context.close()


COUNTER_PAGE = """<!DOCTYPE html>
<html><head><title>Counter</title></head>
<body><p>Count: <span id="count">0</span></p><button id="add">Add one</button>
<script>
let count = 0;
const shown = document.getElementById('count');
document.getElementById('add').onclick = () => { count += 1; shown.textContent = count; };
</script></body></html>
"""


async def test_the_conversations_apps_are_listed_with_status_expiry_and_a_working_link(
    browser: Browser, agent_server: ServerProcess, scripted_llm: ScriptedOpenAI
) -> None:
    context = await browser.new_context(viewport={"width": 1360, "height": 860})
    await context.add_init_script(f"localStorage.setItem('agentic.apiKey', {agent_server.api_key!r});")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(agent_server.url + "/")
    await expect(page.locator("#workspace-select option")).not_to_have_count(0)
    await expect(page.locator("#apps li.none")).to_have_text("No apps in this conversation")

    scripted_llm.reset()
    scripted_llm.when(CODE, f"Here is the page:\n```html\n{COUNTER_PAGE}```\n")
    await _submit(page, "Build a web page with a count and a button that adds one, and host it")
    reply = page.locator(".msg.ai").last
    await expect(reply).to_contain_text("Done: index.html is hosted and passed its browser check")
    await expect(reply.locator("a[href*='/apps/']")).to_be_visible()  # the reply's signed link is clickable

    # Refreshed when the run ended: the app, its status and its expiry, with a signed link.
    item = page.locator("#apps li[data-app-id]")
    await expect(item).to_have_count(1)
    await expect(item.locator("a")).to_have_text("index.html")
    await expect(item.locator(".state")).to_have_text("running")
    await expect(item.locator(".meta")).to_contain_text("expires")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "ui_apps.png"), full_page=False)

    async with context.expect_page() as opened:
        await item.locator("a").click()
    app_page = await opened.value
    await expect(app_page.locator("#count")).to_have_text("0")
    await app_page.click("#add")
    await expect(app_page.locator("#count")).to_have_text("1")
    assert "/apps/" in app_page.url and "agentic_link" not in app_page.url  # the link set a cookie
    assert not errors, errors
    await context.close()
