"""Try a hosted app in the sandboxed browser the way a user would, and say plainly what failed.

What counts as working, in order (the first failure is the one reported):

1. The page loads (HTTP status below 400, the egress proxy let it through) and shows some text.
2. No JavaScript error: console errors and uncaught exceptions, on load and while clicking (a
   missing ``/favicon.ico`` is not the app's fault and is ignored).
3. The user's explicit expectations (:class:`AppExpectations`): texts the page must show, and a
   number that each click of a button changes by a given step ("a button that adds one").
4. Generically, every button does something observable: after filling the page's empty inputs with
   sample values, clicking it changes the page's text (or its title, or an input's value). Elements
   that change without text (an empty ``<div>`` appended, a class toggled) do not count, nor does a
   dialog alone (measured: the small model's broken to-do pages appended empty items, or answered
   a click with ``alert('Please enter a task.')``); the report names the dialog. A form that
   reloads the page showing the same text did nothing (its result vanished with the old document).

The browser reaches the app as ``http://<app_id>.apps.internal/`` through the egress proxy, which
routes a tenant to its own apps only. Raises :class:`sandbox.errors.SandboxError` when the browser
itself cannot run (the caller decides what an unchecked app means).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tools.browser import APP_HOST_SUFFIX
from tools.services import get_browsers, get_sandbox

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Dialog, Locator, Page

__all__ = ["AppCheck", "AppExpectations", "probe_app"]

logger = logging.getLogger(__name__)

MAX_CONTROLS = 8
CLICK_TIMEOUT_MS = 5_000
CHANGE_WAIT_MS = 2_000
LOAD_TIMEOUT_MS = 20_000
PAGE_TEXT_CHARS = 1500
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_CONTROLS = "button, input[type=button], input[type=submit], [onclick]:not(button):not(input)"
_INPUTS = (
    "input:not([type]), input[type=text], input[type=number], input[type=search], input[type=email], "
    "input[type=tel], input[type=url], textarea"
)
# What the page shows: its text, and with its title and input values what a click must change.
_SNAPSHOT_JS = """() => {
  const text = document.body ? document.body.innerText : '';
  const values = Array.from(document.querySelectorAll('input, textarea, select'))
    .map(e => (e.type === 'checkbox' || e.type === 'radio') ? String(e.checked) : e.value).join('\\u0001');
  return {text, state: [document.title, text, values].join('\\u0000')};
}"""
_CHANGED_JS = f"before => ({_SNAPSHOT_JS})().state !== before"
_MARK_JS = "() => { window.__agenticProbe = 1; }"
_MARKED_JS = "() => window.__agenticProbe === 1"


@dataclass(frozen=True, kw_only=True)
class AppExpectations:
    """What the user's request says the app must do (checked before the generic rules)."""

    texts: tuple[str, ...] = ()
    """Texts the page must show, on load or after the clicks (case-insensitive)."""
    click_delta: float | None = None
    """Clicking a button changes a number on the page by this much, every click (1 for "adds one")."""
    needs_button: bool = False
    """The request speaks of a button or of clicking: a page without one fails."""

    def describe(self) -> list[str]:
        """The expectations as short sentences (for reports and replies)."""
        said = ["it has a button to click"] if self.needs_button else []
        said += [f"the page shows {t!r}" for t in self.texts]
        if self.click_delta is not None:
            said.append(f"each click of the button changes the number by {_number(self.click_delta)}")
        return said


@dataclass(frozen=True, kw_only=True)
class AppCheck:
    """The outcome of one probe; ``problem`` names the failure class (None when it passed)."""

    passed: bool
    problem: str | None = None
    """``LoadError``, ``JSError``, ``ExpectationFailed``, ``ClickError`` or ``NoEffect``."""
    message: str = ""
    steps: tuple[str, ...] = ()
    page_text: str = ""
    console_errors: tuple[str, ...] = ()

    def render(self) -> str:
        """The report as text: ``CHECK PASSED`` / ``CHECK FAILED`` with what each step saw."""
        head = "CHECK PASSED" if self.passed else f"CHECK FAILED: {self.problem}: {self.message}"
        lines = [head, *self.steps]
        if self.console_errors:
            lines += ["Console errors:", *self.console_errors]
        if not self.passed:
            lines += ["Page text:", self.page_text]
        return "\n".join(lines)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _label(raw: str) -> str:
    text = " ".join(raw.split())
    return text[:60] or "(no label)"


@dataclass
class _Session:
    """What the page did while we probed it."""

    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def _console_error(session: _Session, message: ConsoleMessage) -> None:
    if message.type != "error":
        return
    where = str((message.location or {}).get("url", ""))
    if where.endswith("/favicon.ico"):
        return
    session.console.append(message.text[:300])


def _on_dialog(session: _Session, dialog: Dialog) -> None:
    session.dialogs.append(dialog.message[:200])
    asyncio.ensure_future(dialog.dismiss())


async def _snapshot(page: Page) -> dict[str, str]:
    value: dict[str, str] = await page.evaluate(_SNAPSHOT_JS)
    return value


async def _fill_inputs(page: Page, session: _Session, *, first: bool = True) -> None:
    """Type sample values into the page's visible, empty inputs (numbers get 3, text gets "test")."""
    inputs = page.locator(_INPUTS)
    count = await inputs.count()
    if not count and first:
        session.steps.append("the page has no text input to type into")
    for index in range(min(count, MAX_CONTROLS)):
        box = inputs.nth(index)
        try:
            if not await box.is_visible() or not await box.is_editable() or await box.input_value():
                continue
            kind = (await box.get_attribute("type") or "text").lower()
            sample = "3" if kind == "number" else "test"
            await box.fill(sample, timeout=CLICK_TIMEOUT_MS)
            name = await box.get_attribute("id") or await box.get_attribute("name") or kind
            session.steps.append(f"typed {sample!r} into input {name!r}")
        except Exception as exc:  # an input that vanished or refuses text: the buttons still get tried
            logger.debug("could not fill input %d: %s", index, exc)


async def _click(page: Page, control: Locator, before: str) -> bool:
    """Click ``control``; True when the page changed within :data:`CHANGE_WAIT_MS`."""
    await control.click(timeout=CLICK_TIMEOUT_MS)
    try:
        await page.wait_for_function(_CHANGED_JS, arg=before, timeout=CHANGE_WAIT_MS)
    except Exception:
        return False
    return True


def _delta_seen(before: str, after: str, delta: float) -> bool:
    """True when one number of the page text moved by ``delta`` and the others stayed."""
    old = [float(n) for n in _NUMBER.findall(before)]
    new = [float(n) for n in _NUMBER.findall(after)]
    if len(old) != len(new):
        return False
    moved = [b - a for a, b in zip(old, new, strict=True) if b != a]
    return len(moved) == 1 and abs(moved[0] - delta) < 1e-9


def _numbers(text: str) -> str:
    return ", ".join(_NUMBER.findall(text)[:8]) or "none"


async def _probe_controls(page: Page, session: _Session, expect: AppExpectations) -> tuple[str, str] | None:
    """Click each button; the first failure as (problem, message), expectations before generic rules."""
    controls = page.locator(_CONTROLS)
    count = await controls.count()
    idle: list[str] = []
    delta_met = expect.click_delta is None
    delta_tries: list[str] = []
    clicked = 0
    for index in range(min(count, MAX_CONTROLS)):
        control = controls.nth(index)
        try:
            if not await control.is_visible() or not await control.is_enabled():
                continue
            label = _label(await control.inner_text() or await control.get_attribute("value") or "")
        except Exception:  # gone since it was counted (the page changed itself): nothing to click
            continue
        before = await _snapshot(page)
        dialogs = len(session.dialogs)
        try:
            await page.evaluate(_MARK_JS)
            changed = await _click(page, control, before["state"])
            await page.wait_for_load_state("load", timeout=CHANGE_WAIT_MS)
            reloaded = not await page.evaluate(_MARKED_JS)
        except Exception as exc:
            return "ClickError", f"the button {label!r} could not be clicked: {str(exc).splitlines()[0]}"
        clicked += 1
        after = await _snapshot(page)
        if reloaded:  # a new document (a form submitted): only a different text counts
            changed = after["text"] != before["text"]
            await _fill_inputs(page, session, first=False)
        what = "the page changed" if changed else "nothing changed on the page"
        if reloaded and not changed:
            what = "the page reloaded (a form was submitted) and shows the same text"
        if len(session.dialogs) > dialogs:
            what += f" (a dialog said {session.dialogs[-1]!r})"
        session.steps.append(f"clicked {label!r}: {what}")
        if not changed:
            idle.append(label)
            continue
        if not delta_met and expect.click_delta is not None:
            if _delta_seen(before["text"], after["text"], expect.click_delta):
                again = await _snapshot(page)
                await _click(page, control, again["state"])
                twice = await _snapshot(page)
                delta_met = _delta_seen(again["text"], twice["text"], expect.click_delta)
                session.steps.append(
                    f"clicked {label!r} again: numbers {_numbers(again['text'])} -> {_numbers(twice['text'])}"
                )
            delta_tries.append(f"{label!r}: numbers {_numbers(before['text'])} -> {_numbers(after['text'])}")
    if not clicked and (expect.needs_button or expect.click_delta is not None):
        return "ExpectationFailed", "the page has no button to click (the request asks for one)"
    if not delta_met and expect.click_delta is not None:
        step = _number(expect.click_delta)
        seen = "; ".join(delta_tries) or "no click changed the page"
        return "ExpectationFailed", f"no button changed a number on the page by {step} per click ({seen})"
    if idle:
        names = ", ".join(repr(n) for n in idle)
        return "NoEffect", f"clicking {names} changed nothing on the page (see what the check did)"
    return None


async def probe_app(context: object, app_id: str, expectations: AppExpectations | None = None) -> AppCheck:
    """Open the app, click what can be clicked, and judge it (see the module docstring)."""
    if not app_id.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"not an app id: {app_id[:80]!r}")
    expect = expectations or AppExpectations()
    pool = await get_browsers(context)
    sandbox = await get_sandbox(context)
    session = _Session()
    async with pool.session(sandbox) as browser:
        page = await browser.new_page()
        page.set_default_timeout(CLICK_TIMEOUT_MS)  # no step of a small page waits longer
        page.on("console", lambda m: _console_error(session, m))
        page.on("pageerror", lambda e: session.console.append(str(e)[:300]))
        page.on("dialog", lambda d: _on_dialog(session, d))
        failure = await _probe(page, session, app_id, expect)
        try:
            text = (await page.inner_text("body", timeout=2000))[:PAGE_TEXT_CHARS]
        except Exception:
            text = ""
    steps, console = tuple(session.steps), tuple(session.console[-10:])
    if failure is None:
        logger.info("app %s passed its browser check", app_id)
        return AppCheck(passed=True, steps=steps, page_text=text, console_errors=console)
    logger.info("app %s failed its browser check: %s", app_id, failure[0])
    return AppCheck(
        passed=False,
        problem=failure[0],
        message=failure[1],
        steps=steps,
        page_text=text,
        console_errors=console,
    )


async def _probe(
    page: Page, session: _Session, app_id: str, expect: AppExpectations
) -> tuple[str, str] | None:
    """The checks in order; the first failure as (problem, message)."""
    try:
        response = await page.goto(f"http://{app_id}{APP_HOST_SUFFIX}/", timeout=LOAD_TIMEOUT_MS)
    except Exception as exc:
        return "LoadError", f"the page did not load: {str(exc).splitlines()[0]}"
    status = response.status if response is not None else 0
    if response is not None and response.headers.get("x-agentic-egress") == "denied":
        return "LoadError", f"the platform's egress proxy refused the app: {(await response.text()).strip()}"
    if status >= 400:
        return "LoadError", f"opening / answered HTTP {status}"
    try:
        await page.wait_for_load_state("networkidle", timeout=3000)
    except Exception:
        pass  # a page that keeps polling is fine; what it shows after load is what counts
    first = await _snapshot(page)
    shown = " ".join(first["text"].split())[:160]
    session.steps.append(f"opened / (HTTP {status}); the page shows {shown!r}")
    if not shown:
        return (
            "LoadError",
            "the page is blank: it shows no text (an empty answer, or an error while serving it)",
        )
    if session.console:
        return "JSError", "the page has JavaScript errors after loading"
    await _fill_inputs(page, session)
    found = await _probe_controls(page, session, expect)
    if session.console:
        return "JSError", "JavaScript errors while clicking the page's buttons"
    last = await _snapshot(page)
    seen = (first["text"] + "\n" + last["text"]).lower()
    missing = [t for t in expect.texts if t.lower() not in seen]
    if missing:
        return "ExpectationFailed", "the page never shows " + ", ".join(repr(t) for t in missing)
    return found
