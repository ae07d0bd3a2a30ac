"""Browser tools: ``browse`` reads a web page, ``check_app`` verifies a hosted app, in a sandboxed Chromium.

Each call opens its own short session (:class:`sandbox.browser.BrowserPool`) in the conversation's
guarded sandbox, so the tenant's limits and budgets hold and the egress proxy decides every request
(a refused address comes back as the proxy's refusal, never as a page from that address). Hosted apps
are reached as ``http://<app_id>.apps.internal/`` (the proxy routes a tenant to its own apps only).
Screenshots are stored as workspace file versions (base64 text: the store keeps UTF-8 text).
:func:`read_pages` reads several pages in one session (the Search Agent's result pages).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command
from pydantic import BaseModel, Field

from sandbox.egress_apps import APPS_INTERNAL_DOMAIN
from tools.files import workspace_id_of
from tools.readable import readable_errors
from tools.services import get_browsers, get_sandbox, get_store

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["APP_HOST_SUFFIX", "BROWSER_TOOLS", "AppStep", "PageText", "browse", "check_app", "read_pages"]

logger = logging.getLogger(__name__)

APP_HOST_SUFFIX = "." + APPS_INTERNAL_DOMAIN
TEXT_CHARS = 8000
MAX_LINKS = 40
STEP_TIMEOUT_MS = 10_000
_LINKS_JS = "els => els.map(e => [(e.innerText || '').trim().slice(0, 80), e.href])"


class AppStep(BaseModel):
    """One step of an app check."""

    action: Literal["open", "click", "fill", "read", "screenshot"]
    target: str = Field(default="", description="CSS selector (click, fill, read) or path (open)")
    value: str = Field(default="", description="Text to type (fill)")
    expect: str | None = Field(default=None, description="Text the element must contain (read)")


def _answer(runtime: ToolRuntime[Any, Any], text: str, files: dict[str, str]) -> Command[Any] | str:
    """A state update (new file versions) when called by a ToolNode, plain text otherwise."""
    if not runtime.tool_call_id or not files:
        return text
    message = ToolMessage(content=text, tool_call_id=runtime.tool_call_id)
    return Command(update={"files": files, "messages": [message]})


async def _screenshot(runtime: ToolRuntime[Any, Any], page: Page, name: str, files: dict[str, str]) -> str:
    """Store a PNG of ``page`` as a new version of ``screenshots/<name>.png.b64``; describe it."""
    workspace_id = workspace_id_of(runtime)
    if workspace_id is None:
        return "(no screenshot: this conversation has no workspace yet)"
    png = await page.screenshot(timeout=STEP_TIMEOUT_MS)
    store = await get_store(runtime.context)
    version = await store.write(
        workspace_id,
        f"screenshots/{name}.png.b64",
        base64.b64encode(png).decode(),
        author="agent",
        message=f"screenshot of {page.url}",
    )
    files[version.path] = version.id
    return f"screenshot saved as {version.path} version {version.number} (id {version.id})"


@dataclass(frozen=True, kw_only=True)
class PageText:
    """What a page shows: its final URL, status, title, readable text and links (or why not)."""

    url: str
    status: int = 0
    title: str = ""
    text: str = ""
    links: tuple[tuple[str, str], ...] = ()
    error: str | None = None

    def render(self) -> str:
        """The page as the model reads it: a head line, the text, the links."""
        if self.error is not None:
            return f"Error: {self.error}"
        lines = [f"{self.url} (HTTP {self.status}) {self.title}".rstrip(), "", self.text, "", "Links:"]
        lines += [f"- {label or '(no text)'}: {href}" for label, href in self.links]
        return "\n".join(lines)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"only http:// and https:// addresses can be browsed, not {url[:100]!r}")
    return parts.hostname


async def _read(page: Page, url: str, chars: int = TEXT_CHARS) -> PageText:
    """Open ``url`` in ``page`` and read it (a refusal by the egress proxy is an error, not a page)."""
    response = await page.goto(url, timeout=STEP_TIMEOUT_MS * 3)
    if response is not None and response.headers.get("x-agentic-egress") == "denied":
        refusal = (await response.text()).strip()
        return PageText(url=url, error=f"the platform's egress proxy refused {url}: {refusal}")
    links: list[list[str]] = await page.eval_on_selector_all("a[href]", _LINKS_JS)
    return PageText(
        url=page.url,
        status=response.status if response is not None else 0,
        title=await page.title(),
        text=(await page.inner_text("body", timeout=STEP_TIMEOUT_MS))[:chars],
        links=tuple((label, href) for label, href in links[:MAX_LINKS]),
    )


async def read_pages(context: object, urls: list[str], *, chars: int = TEXT_CHARS) -> list[PageText]:
    """Read several pages in one sandboxed browser session (each failure is its page's ``error``)."""
    pages: list[PageText] = []
    if not urls:
        return pages
    pool = await get_browsers(context)
    sandbox = await get_sandbox(context)
    async with pool.session(sandbox) as browser:
        for url in urls:
            page = await browser.new_page()
            try:
                _check_url(url)
                pages.append(await _read(page, url, chars))
            except Exception as exc:
                pages.append(PageText(url=url, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
            finally:
                await page.close()
    logger.info("read %d pages (%d failed)", len(pages), sum(p.error is not None for p in pages))
    return pages


@tool
@readable_errors
async def browse(url: str, runtime: ToolRuntime[Any, Any], screenshot: bool = False) -> Command[Any] | str:
    """Open a web page in a sandboxed browser and return its readable text and links.

    Args:
        url: An http:// or https:// address.
        screenshot: Also save a screenshot of the page as a workspace file.
    """
    hostname = _check_url(url)
    pool = await get_browsers(runtime.context)
    sandbox = await get_sandbox(runtime.context)
    files: dict[str, str] = {}
    async with pool.session(sandbox) as browser:
        page = await browser.new_page()
        found = await _read(page, url)
        text = found.render()
        if screenshot and found.error is None:
            text += "\n" + await _screenshot(runtime, page, f"{hostname}-{int(time.time())}", files)
    logger.info("browsed %s (HTTP %s)", url, found.status)
    return _answer(runtime, text, files)


async def _step(
    runtime: ToolRuntime[Any, Any], page: Page, base: str, step: AppStep, files: dict[str, str]
) -> str:
    """Do one step; its outcome as text (raises on failure)."""
    if step.action == "open":
        response = await page.goto(base + (step.target or "/").lstrip("/"), timeout=STEP_TIMEOUT_MS * 2)
        status = response.status if response is not None else 0
        if status >= 400:
            raise AssertionError(f"HTTP {status}: {(await page.inner_text('body'))[:300]}")
        return f"opened {page.url} (HTTP {status})"
    if step.action == "click":
        await page.click(step.target, timeout=STEP_TIMEOUT_MS)
        return f"clicked {step.target}"
    if step.action == "fill":
        await page.fill(step.target, step.value, timeout=STEP_TIMEOUT_MS)
        return f"filled {step.target}"
    if step.action == "read":
        locator = page.locator(step.target or "body").first
        if step.expect is not None:  # wait for it (the page may update after a click)
            try:
                await locator.filter(has_text=step.expect).wait_for(timeout=STEP_TIMEOUT_MS)
            except Exception:
                seen = (await locator.inner_text(timeout=STEP_TIMEOUT_MS))[:300]
                raise AssertionError(f"{step.target} shows {seen!r}, expected {step.expect!r}") from None
        return f"{step.target or 'body'}: {(await locator.inner_text(timeout=STEP_TIMEOUT_MS))[:500]!r}"
    return await _screenshot(runtime, page, f"check-{int(time.time())}", files)


@tool
@readable_errors
async def check_app(app_id: str, steps: list[AppStep], runtime: ToolRuntime[Any, Any]) -> Command[Any] | str:
    """Check a hosted app in a sandboxed browser: open pages, click, fill, read, take screenshots.

    Returns "CHECK PASSED" with what each step saw, or "CHECK FAILED at step N" with the error, the
    page's text and its console errors: fix the app's code from that, host it again and re-check.

    Args:
        app_id: The app's id (the part after /apps/ in its link).
        steps: In order, e.g. [{"action": "open", "target": "/"}, {"action": "click", "target": "button"},
            {"action": "read", "target": "#count", "expect": "1"}, {"action": "screenshot"}].
    """
    if not app_id.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"not an app id: {app_id[:80]!r}")
    steps = [s if isinstance(s, AppStep) else AppStep.model_validate(s) for s in steps]
    if not steps or steps[0].action != "open":
        steps = [AppStep(action="open", target="/"), *steps]
    base = f"http://{app_id}{APP_HOST_SUFFIX}/"
    pool = await get_browsers(runtime.context)
    sandbox = await get_sandbox(runtime.context)
    files: dict[str, str] = {}
    done: list[str] = []
    console: list[str] = []
    async with pool.session(sandbox) as browser:
        page = await browser.new_page()
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(str(e)))
        for number, step in enumerate(steps, start=1):
            try:
                done.append(f"{number}. {step.action}: {await _step(runtime, page, base, step, files)}")
            except Exception as exc:
                text = ""
                try:
                    text = (await page.inner_text("body", timeout=2000))[:1500]
                except Exception:
                    pass
                report = [f"CHECK FAILED at step {number} ({step.action} {step.target}): {exc}".strip()]
                report += ["Steps that passed:", *done, "Page text:", text]
                report += ["Console errors:", *console[-10:]] if console else []
                logger.info("check of app %s failed at step %d", app_id, number)
                return _answer(runtime, "\n".join(report), files)
    report = ["CHECK PASSED", *done] + (["Console errors:", *console[-10:]] if console else [])
    return _answer(runtime, "\n".join(report), files)


BROWSER_TOOLS: list[BaseTool] = [browse, check_app]
