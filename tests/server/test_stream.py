"""Streamed runs over SSE: event order, final result, and cancellation on disconnect."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from tests.server.support import SseEvent, assert_error, read_sse

PROGRAM = (
    "import sys, time\n"
    "print('one', flush=True)\n"
    "time.sleep(0.3)\n"
    "print('two', file=sys.stderr, flush=True)\n"
    "time.sleep(0.3)\n"
    "print('three', flush=True)\n"
    "sys.exit(5)\n"
)


def _collect(response: httpx.Response) -> list[SseEvent]:
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream")
    return list(read_sse(response))


def _check_order(events: list[SseEvent]) -> None:
    kinds = [e.event for e in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1, kinds
    output = [(e.event, e.json()["data"]) for e in events[:-1]]
    stdout = "".join(d for k, d in output if k == "stdout")
    stderr = "".join(d for k, d in output if k == "stderr")
    assert (stdout, stderr) == ("one\nthree\n", "two\n")
    # Interleaving follows the program: "one" before "two" before "three" (chunks may split lines).
    order = [k for k, d in output if d.strip()]
    collapsed = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    assert collapsed == ["stdout", "stderr", "stdout"], output
    result = events[-1].json()
    assert (result["exit_code"], result["reason"], result["stdout"]) == (5, "exit", "one\nthree\n")
    assert result["tier"] == "light"


def test_stream_endpoint_orders_events(client: httpx.Client, workspace_id: str) -> None:
    with client.stream("POST", f"/v1/workspaces/{workspace_id}/runs/stream", json={"code": PROGRAM}) as r:
        _check_order(_collect(r))


def test_accept_header_streams(client: httpx.Client, workspace_id: str) -> None:
    client.put(f"/v1/workspaces/{workspace_id}/files/prog.py", json={"content": PROGRAM})
    headers = {"Accept": "text/event-stream"}
    with client.stream(
        "POST", f"/v1/workspaces/{workspace_id}/runs", json={"path": "prog.py"}, headers=headers
    ) as r:
        events = _collect(r)
    _check_order(events)
    assert events[-1].json()["path"] == "prog.py"


def test_streamed_output_arrives_before_the_end(client: httpx.Client, workspace_id: str) -> None:
    code = "import time\nprint('early', flush=True)\ntime.sleep(2)\nprint('late', flush=True)\n"
    started = time.monotonic()
    with client.stream("POST", f"/v1/workspaces/{workspace_id}/runs/stream", json={"code": code}) as r:
        events = read_sse(r)  # keep a reference: a collected reader closes the stream early
        first = next(events)
        first_at = time.monotonic() - started
        rest = list(events)
    # Chunk boundaries are the backend's business; the first chunk carries the start of "early".
    assert first.event == "stdout" and "early".startswith(first.json()["data"].strip()), first
    assert "late" not in first.data
    assert first_at < 1.8, f"first chunk came after {first_at:.2f}s: not streamed"
    assert rest[-1].event == "result"


def test_stream_errors_before_start_are_json(client: httpx.Client, workspace_id: str) -> None:
    response = client.post(f"/v1/workspaces/{workspace_id}/runs/stream", json={"path": "missing.py"})
    assert_error(response, 404, "file_not_found")


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(proc.name))
    return found


def test_client_disconnect_stops_the_run(client: httpx.Client, workspace_id: str) -> None:
    marker = "marker-" + uuid.uuid4().hex
    # The ticking program carries the marker on its host command line: a warm sandbox's interpreter
    # keeps the command line it started with (its stub's), so the run's args are not seen there.
    loop = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.1)\n"
    code = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {loop!r}, {marker!r}])\n"
    body = {"code": code, "limits": {"wall_seconds": 60}}
    with client.stream("POST", f"/v1/workspaces/{workspace_id}/runs/stream", json=body) as r:
        events = read_sse(r)  # keep a reference: a collected reader closes the stream early
        first = next(events)
        assert first.event == "stdout"
        assert _processes_with(marker), "the program should be running"
    # The response is closed: the server must cancel the run and the sandbox kill the program.
    deadline = time.monotonic() + 15
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_with(marker), "the sandboxed program survived the client's disconnect"
