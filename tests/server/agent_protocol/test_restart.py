"""Restart safety: ``kill -9`` the real server mid-run, start it again on the same database.

A run that was running is resumed from its last checkpoint (the step already checkpointed is not
repeated), a run queued behind it still runs, and a run that already used its attempts is marked
failed with the reason. No file version or message is lost either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.server.agent_protocol.support import ServerProcess

RESTART_GRAPH = "tests.server.agent_protocol.restart_graphs:graph"
ENV = {"AGENTIC_GRAPH_REF": RESTART_GRAPH, "AGENTIC_RUN_LEASE_S": "1.5"}


def _until(what: str, check: Callable[[], Any], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _messages(c: httpx.Client, thread_id: str) -> list[str]:
    state = c.get(f"/threads/{thread_id}/state")
    assert state.status_code == 200, state.text
    return [m["content"] for m in (state.json()["values"] or {}).get("messages", [])]


def _run(c: httpx.Client, thread_id: str, run_id: str) -> dict[str, Any]:
    response = c.get(f"/threads/{thread_id}/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _start(c: httpx.Client, thread_id: str, **state: str) -> str:
    body = {"assistant_id": "agent", "input": state, "multitask_strategy": "enqueue"}
    response = c.post(f"/threads/{thread_id}/runs", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["run_id"])


def _metric(c: httpx.Client, name: str, label: str) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith(name) and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_kill_9_mid_run_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "server"
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    open_gate = tmp_path / "open-gate"
    open_gate.touch()

    with ServerProcess(data, ENV) as first, httpx.Client(base_url=first.url, headers=first.headers) as c:
        ws = c.post("/v1/workspaces", json={"name": "restart"}).json()["id"]
        tid = c.post("/threads", json={}).json()["thread_id"]
        blocked = _start(c, tid, workspace_id=ws, gate=str(gate), marker=str(marker))
        queued = _start(c, tid, workspace_id=ws, gate=str(open_gate), marker=str(tmp_path / "m2"))
        _until("the run to block in its second step", marker.exists)
        _until("the first step's checkpoint", lambda: _messages(c, tid) == ["drafted notes.md v1"])
        assert _run(c, tid, blocked)["status"] == "running" and _run(c, tid, queued)["status"] == "pending"
        first.kill()

    gate.touch()
    with ServerProcess(data, ENV) as second, httpx.Client(base_url=second.url, headers=second.headers) as c:
        _until("the resumed run to succeed", lambda: _run(c, tid, blocked)["status"] == "success")
        _until("the queued run to succeed", lambda: _run(c, tid, queued)["status"] == "success")
        # Step 1 of the killed run was not repeated: one "drafted v1", then the queued run's two steps.
        assert _messages(c, tid) == [
            "drafted notes.md v1",
            "finished notes.md v2",
            "drafted notes.md v3",
            "finished notes.md v4",
        ]
        history = c.get(f"/v1/workspaces/{ws}/history/notes.md").json()
        assert [(v["number"], v["message"]) for v in history] == [
            (1, "draft"),
            (2, "final"),
            (3, "draft"),
            (4, "final"),
        ]
        assert _metric(c, "agentic_recovered_runs_total", 'action="resumed"') == 1
        # The queued run never belonged to the dead process (it waited in the shared queue, no owner):
        # it is simply claimed, not recovered.
        assert _metric(c, "agentic_recovered_runs_total", 'action="started"') == 0
        assert c.get(f"/threads/{tid}").json()["status"] == "idle"

        # Second case: a run that already used its attempts is marked failed, with the reason.
        gate2, marker2 = tmp_path / "gate2", tmp_path / "marker2"
        tid2 = c.post("/threads", json={}).json()["thread_id"]
        doomed = _start(c, tid2, workspace_id=ws, gate=str(gate2), marker=str(marker2))
        _until("the second run to block", marker2.exists)
        _until("its first checkpoint", lambda: _messages(c, tid2) == ["drafted notes.md v5"])
        second.kill()

    env = {**ENV, "AGENTIC_RUN_MAX_ATTEMPTS": "1"}
    with ServerProcess(data, env) as third, httpx.Client(base_url=third.url, headers=third.headers) as c:
        _until("the run to be marked failed", lambda: _run(c, tid2, doomed)["status"] == "error")
        run = _run(c, tid2, doomed)
        assert "AGENTIC_RUN_MAX_ATTEMPTS" in run["error"] and "stopped during this run" in run["error"]
        assert c.get(f"/threads/{tid2}").json()["status"] == "error"
        assert _messages(c, tid2) == ["drafted notes.md v5"]  # what it did before the kill is kept
        assert c.get(f"/v1/workspaces/{ws}/files/notes.md").json()["number"] == 5
        assert _messages(c, tid)[-1] == "finished notes.md v4"
        assert "marked failed" in third.log()


def test_graceful_shutdown_hands_a_running_run_back_to_the_queue(tmp_path: Path) -> None:
    data = tmp_path / "server"
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    with ServerProcess(data, ENV) as first, httpx.Client(base_url=first.url, headers=first.headers) as c:
        ws = c.post("/v1/workspaces", json={"name": "graceful"}).json()["id"]
        tid = c.post("/threads", json={}).json()["thread_id"]
        run_id = _start(c, tid, workspace_id=ws, gate=str(gate), marker=str(marker))
        _until("the run to block in its second step", marker.exists)
        _until("the first step's checkpoint", lambda: _messages(c, tid) == ["drafted notes.md v1"])
        first.stop()
    assert "handed back to the queue" in first.log()

    # One attempt allowed: a crash would have used it up, a graceful hand-back does not count.
    marker.unlink()
    env = {**ENV, "AGENTIC_RUN_MAX_ATTEMPTS": "1"}
    with ServerProcess(data, env) as second, httpx.Client(base_url=second.url, headers=second.headers) as c:
        assert _run(c, tid, run_id)["status"] == "running"
        _until("the run to resume and block again", marker.exists)
        gate.touch()
        _until("the resumed run to succeed", lambda: _run(c, tid, run_id)["status"] == "success")
        assert _messages(c, tid) == ["drafted notes.md v1", "finished notes.md v2"]  # step 1 not repeated
        assert _metric(c, "agentic_recovered_runs_total", 'action="resumed"') == 1
        history = c.get(f"/v1/workspaces/{ws}/history/notes.md").json()
        assert [v["message"] for v in history] == ["draft", "final"]
