"""Helpers for the server tests: a real uvicorn server in a thread, and a small SSE reader."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

__all__ = [
    "API_KEY",
    "MAX_FILE_BYTES",
    "MAX_REQUEST_BYTES",
    "LiveServer",
    "SseEvent",
    "assert_error",
    "demo_ticks",
    "read_sse",
]

API_KEY = "test-key-" + uuid.uuid4().hex
MAX_FILE_BYTES = 200_000  # the test server's file cap
MAX_REQUEST_BYTES = 2_000_000  # the test server's request-body cap


class LiveServer:
    """Run an ASGI app under uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app: FastAPI, port: int = 0) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn-test", daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 60 s")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@dataclass
class SseEvent:
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def read_sse(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse a ``text/event-stream`` body as it arrives (comments / pings skipped)."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def assert_error(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, object]:
    """Check the JSON error envelope and return its ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if kind is not None:
        assert error["type"] == kind, error
    return dict(error)


def demo_ticks(client: httpx.Client, url: str) -> tuple[list[str], float]:
    """The demo app's Server-Sent Events at ``url`` and how soon the first arrived (seconds).

    The app sleeps 0.3 s between events: a first event well before the end shows the stream is
    relayed as it comes, not buffered.
    """
    ticks: list[str] = []
    first_at: float | None = None
    start = time.monotonic()
    with client.stream("GET", url) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        for line in events.iter_lines():
            if line.startswith("data:"):
                ticks.append(line[5:].strip())
                first_at = first_at or time.monotonic() - start
    assert first_at is not None, "no event came"
    return ticks, first_at
