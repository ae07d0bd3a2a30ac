"""Agent Protocol inputs a client controls never cause a 5xx (SQLite and Postgres servers).

Each case was a 500 before: integers past 64 bits, racing creates of one thread id, state updates
naming no node or not fitting the state, history paged from an unknown checkpoint.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.agent_protocol.support import ServerProcess
from tests.server.support import assert_error

BIG = 2**70


@pytest.fixture
def http(sample_server: ServerProcess) -> Iterator[httpx.Client]:
    """A plain HTTP client of the sample-graph server."""
    headers = {"X-API-Key": sample_server.api_key or ""}
    with httpx.Client(base_url=sample_server.url, headers=headers, timeout=60) as c:
        yield c


@pytest.fixture
def thread(http: httpx.Client) -> str:
    """A thread with one finished run of the sample graph (so it has checkpoints)."""
    thread_id = http.post("/threads", json={}).json()["thread_id"]
    done = http.post(f"/threads/{thread_id}/runs/wait", json={"assistant_id": "agent", "input": {"ticks": 1}})
    assert done.status_code == 200, done.text
    return str(thread_id)


def _state(http: httpx.Client, thread_id: str) -> dict[str, Any]:
    response = http.get(f"/threads/{thread_id}/state")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_offsets_past_64_bits_are_422(http: httpx.Client, thread: str) -> None:
    for response in (
        http.post("/threads/search", json={"offset": BIG}),
        http.post("/assistants/search", json={"offset": BIG}),
        http.get(f"/threads/{thread}/runs", params={"offset": str(BIG)}),
    ):
        error = assert_error(response, 422, "validation_error")
        assert "offset" in str(error["message"]), error


def test_last_event_id_past_64_bits_is_422(http: httpx.Client, thread: str) -> None:
    run_id = http.get(f"/threads/{thread}/runs").json()[0]["run_id"]
    for value in (str(BIG), str(-BIG)):
        response = http.get(f"/threads/{thread}/runs/{run_id}/stream", headers={"Last-Event-ID": value})
        error = assert_error(response, 422, "validation_error")
        assert "last-event-id" in str(error["message"]).lower(), error
    ok = http.get(f"/threads/{thread}/runs/{run_id}/stream", headers={"Last-Event-ID": "0"})
    assert ok.status_code == 200, ok.text


async def _create_at_once(url: str, key: str, body: dict[str, Any], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as c:
        return list(await asyncio.gather(*(c.post("/threads", json=body) for _ in range(n))))


@pytest.mark.parametrize("if_exists", ["raise", "do_nothing"])
def test_concurrent_creates_of_one_thread_id(
    sample_server: ServerProcess, http: httpx.Client, if_exists: str
) -> None:
    for _ in range(3):  # a race is not certain in one round
        thread_id = str(uuid.uuid4())
        body = {"thread_id": thread_id, "metadata": {"n": 1}, "if_exists": if_exists}
        responses = asyncio.run(_create_at_once(sample_server.url, sample_server.api_key or "", body, 10))
        codes = sorted(r.status_code for r in responses)
        if if_exists == "raise":
            assert codes == [200] + [409] * 9, [r.text for r in responses]
            for r in responses:
                if r.status_code == 409:
                    assert_error(r, 409, "thread_exists")
        else:
            assert codes == [200] * 10, [r.text for r in responses]
            assert len({r.json()["created_at"] for r in responses}) == 1
        stored = http.get(f"/threads/{thread_id}").json()
        assert stored["metadata"]["n"] == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"values": {"steps": ["x"]}, "as_node": "nope"}, "'work'"),
        ({"values": {"steps": ["x"]}, "as_node": ""}, "'approval'"),
        ({"values": [1, 2], "as_node": "work"}, "'values'"),
        ({"values": {"steps": 5}, "as_node": "work"}, "steps"),
        ({"values": {"steps": ["x"]}, "as_node": 7}, "'as_node'"),
    ],
)
def test_bad_state_updates_are_4xx_and_change_nothing(
    http: httpx.Client, thread: str, body: dict[str, Any], says: str
) -> None:
    before = _state(http, thread)
    response = http.post(f"/threads/{thread}/state", json=body)
    assert response.status_code == 422, response.text
    assert says in assert_error(response, 422)["message"]
    after = _state(http, thread)
    assert after["checkpoint"] == before["checkpoint"] and after["values"] == before["values"]
    good = http.post(f"/threads/{thread}/state", json={"values": {"steps": ["x"]}, "as_node": "work"})
    assert good.status_code == 200, good.text


def test_history_before_an_unknown_checkpoint_is_404(http: httpx.Client, thread: str) -> None:
    for before in ("nope", str(uuid.uuid4()), {"checkpoint_id": "nope"}):
        response = http.post(f"/threads/{thread}/history", json={"before": before})
        assert "no checkpoint" in str(assert_error(response, 404, "checkpoint_not_found")["message"])
    history = http.post(f"/threads/{thread}/history", json={}).json()
    assert len(history) >= 2
    newest = history[0]["checkpoint"]["checkpoint_id"]
    older = http.post(f"/threads/{thread}/history", json={"before": newest})
    assert older.status_code == 200 and len(older.json()) == len(history) - 1


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/threads", {"metadata": {"n": [1, BIG]}}),
        ("PATCH", "/threads/{thread}", {"metadata": {"n": BIG}}),
        ("POST", "/threads/{thread}/runs/wait", {"assistant_id": "agent", "input": {"ticks": BIG}}),
        ("POST", "/threads/search", {"metadata": {"n": -BIG}}),
    ],
)
def test_integers_past_64_bits_in_json_are_422(
    http: httpx.Client, thread: str, method: str, url: str, body: dict[str, Any]
) -> None:
    # Found by the stateful fuzzer: orjson cannot store them (a 500), nor read them back exactly.
    before = http.get(f"/threads/{thread}").json()
    response = http.request(method, url.format(thread=thread), json=body)
    assert "past 64 bits" in str(assert_error(response, 422, "validation_error")["message"])
    assert http.get(f"/threads/{thread}").json() == before
