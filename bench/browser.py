"""Time to a sandboxed browser's first page versus an unsandboxed Chromium, in the same run.

Both are Debian's Chromium launched by Playwright (``executable_path``, the same flags):

* unsandboxed: Playwright starts ``/usr/lib/chromium/chromium`` directly on the host;
* sandboxed: :class:`sandbox.browser.BrowserPool` (the wrapper hands the pipe to a local-backend
  run through the guard; the page comes through the egress proxy).

After one warm-up round, each round launches a browser, opens a page served by this bench on
127.0.0.2 (allow-listed for the sandboxed one) and reads its text; rounds alternate. Prints the
medians, and last the ratio sandboxed / unsandboxed (how many times slower the first page is).
Run from the repo root as root: ``python bench/browser.py [-n 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from playwright.async_api import Browser, async_playwright  # noqa: E402

from sandbox.browser import BrowserPool, chromium_flags  # noqa: E402
from sandbox.config import LocalSettings, SandboxSettings  # noqa: E402
from sandbox.guard import GuardedSandbox  # noqa: E402
from sandbox.registry import create_sandbox  # noqa: E402

HOST = "127.0.0.2"
PAGE = b"<html><body><p id='t'>first page</p></body></html>"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        with contextlib.suppress(OSError):  # a browser may close before reading (favicon)
            self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


async def _first_page(browser: Browser, url: str) -> None:
    page = await browser.new_page()
    await page.goto(url)
    assert await page.inner_text("#t") == "first page"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="rounds of each")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer((HOST, 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{HOST}:{server.server_address[1]}/"
    settings = SandboxSettings(local=LocalSettings(cgroup_pool_size=2), egress_allow=[HOST])
    # The host run uses the same flags minus the proxy (nothing to relay to outside a sandbox).
    flags = [f for f in chromium_flags([]) if not f.startswith(("--proxy", "--user-data-dir", "--remote"))]
    sandboxed: list[float] = []
    direct: list[float] = []
    async with create_sandbox(settings, "local") as backend, async_playwright() as playwright:
        guarded = GuardedSandbox.from_settings(backend, settings).for_owner("bench")
        pool = BrowserPool(settings)
        try:
            for round_ in range(args.n + 1):  # round 0 warms both up (drivers, page cache): not counted
                start = time.perf_counter()
                async with pool.session(guarded) as browser:
                    await _first_page(browser, url)
                took = time.perf_counter() - start
                start = time.perf_counter()
                browser = await playwright.chromium.launch(
                    executable_path=str(settings.browser_path), args=flags, headless=True
                )
                try:
                    await _first_page(browser, url)
                finally:
                    await browser.close()
                if round_:
                    sandboxed.append(took)
                    direct.append(time.perf_counter() - start)
        finally:
            await pool.close()
    server.shutdown()
    s, d = statistics.median(sandboxed), statistics.median(direct)
    print(f"unsandboxed Chromium, launch to first page: median {d * 1000:.0f} ms over {args.n}")
    print(f"sandboxed Chromium,   launch to first page: median {s * 1000:.0f} ms over {args.n}")
    print(f"ratio sandboxed / unsandboxed: {s / d:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
