"""``agentic serve`` stops within ``AGENTIC_SHUTDOWN_GRACE_S`` even with a request in flight.

Why it matters: on SIGTERM uvicorn waits for open requests before it runs the app's shutdown,
and the shutdown is what hands this process's agent runs back to the queue. A long REST run in
flight must not hold that step until Kubernetes kills the pod (``terminationGracePeriodSeconds``
in infra/ is sized from this setting). The real server process, a real sandboxed run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
KEY = "shutdown-key-" + uuid.uuid4().hex
GRACE_S = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_with_a_request_in_flight_still_reaches_the_shutdown(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENTIC_DATABASE_URL")},
        "AGENTIC_DATA_DIR": str(tmp_path / "data"),
        "AGENTIC_API_KEYS": KEY,
        "AGENTIC_SHUTDOWN_GRACE_S": str(GRACE_S),
        "AGENTIC_LOG_FORMAT": "text",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from server.cli import app; app()", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
            ws = c.post("/v1/workspaces", json={"name": "shutdown"}).json()["id"]
            program = "import time\nprint('start', flush=True)\ntime.sleep(60)\n"
            assert c.put(f"/v1/workspaces/{ws}/files/sleep.py", json={"content": program}).status_code in (
                200,
                201,
            )

        def long_run() -> None:  # a plain JSON run: the request stays open for the program's 60 s
            with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
                try:
                    c.post(f"/v1/workspaces/{ws}/runs", json={"path": "sleep.py", "tier": "heavy"})
                except httpx.HTTPError:
                    pass  # the server went away mid-request: expected

        runner = threading.Thread(target=long_run, daemon=True)
        runner.start()
        time.sleep(3)  # the request is in flight (the run itself may or may not have started)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took = time.monotonic() - stopped_at
        runner.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert took < GRACE_S + 15, f"stop took {took:.1f} s:\n{text}"
    assert "server stopped; store and sandbox closed" in text, text
