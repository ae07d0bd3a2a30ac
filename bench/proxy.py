"""Requests per second and p99 latency through the app reverse proxy versus straight to the same app.

One server process (``server.app:create_app`` under uvicorn) hosts a small stdlib app in the local
sandbox. The same client (httpx, ``-c`` concurrent workers, ``-n`` GETs each way) then measures:

* direct: the app's own Unix socket on the host (the in-sandbox forwarder to its port), the
  baseline;
* proxied: ``/apps/{id}/`` on the server (token check, app lookup, streamed relay to that socket).

Prints both figures, and last the throughput ratio proxied / direct (target: at least 0.5).
Run from the repo root as root: ``python bench/proxy.py [-n 2000] [-c 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.server.agent_protocol.support import API_KEY, ServerProcess  # noqa: E402

APP = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        body = b'x' * 512
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


async def _load(client: httpx.AsyncClient, url: str, n: int, concurrency: int) -> tuple[float, float, int]:
    """(requests/s, p99 ms, failures) for ``n`` GETs of ``url`` by ``concurrency`` workers."""
    latencies: list[float] = []
    failures = 0
    todo = iter(range(n))

    async def worker() -> None:
        nonlocal failures
        for _ in todo:
            start = time.perf_counter()
            try:
                response = await client.get(url)
                ok = response.status_code == 200 and len(response.content) == 512
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            failures += not ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return n / elapsed, p99, failures


async def main(n: int, concurrency: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        ServerProcess(Path(tmp), {"AGENTIC_APPS_IDLE_STOP_S": "0"}) as srv,
    ):
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=srv.url, headers=headers, timeout=60) as api:
            ws = (await api.post("/v1/workspaces", json={"name": "bench"})).json()["id"]
            await api.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": APP})
            created = await api.post(
                "/v1/apps", json={"workspace_id": ws, "entry": "app.py", "tier": "medium"}
            )
            created.raise_for_status()
            app = created.json()
        sockets = list(Path(tempfile.gettempdir()).glob(f"agentic-bwrap-{srv._proc.pid}-*/net/*/app.sock"))  # noqa: SLF001
        if len(sockets) != 1:
            raise SystemExit(f"expected one app socket, found {sockets}")
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        direct = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(sockets[0]), limits=limits), base_url="http://app"
        )
        proxied = httpx.AsyncClient(base_url=srv.url, headers={"X-App-Token": app["token"]}, limits=limits)
        async with direct, proxied:
            path = f"/apps/{app['id']}/page"
            for client, url in ((direct, "/page"), (proxied, path)):  # warm-up: connections, caches
                await _load(client, url, 100, concurrency)
            d_rps, d_p99, d_fail = await _load(direct, "/page", n, concurrency)
            p_rps, p_p99, p_fail = await _load(proxied, path, n, concurrency)
    print(f"direct (app socket):   {d_rps:8.0f} req/s  p99 {d_p99:6.1f} ms  failures {d_fail}")
    print(f"proxied (/apps/{{id}}/): {p_rps:8.0f} req/s  p99 {p_p99:6.1f} ms  failures {p_fail}")
    print(f"throughput ratio proxied/direct: {p_rps / d_rps:.2f} (target >= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="requests each way")
    parser.add_argument("-c", type=int, default=16, help="concurrent workers")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.c))
