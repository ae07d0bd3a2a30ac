"""``agentic_stream_first_byte_seconds``: each run stream's first body byte is timed on the server.

A server process of its own (the metrics are process-wide), streams through ``langgraph-sdk`` and
raw HTTP: a thread run, a stateless run and a rejoined stream are each counted once, and the
server's time never exceeds what the client measured from sending the request to its first byte.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from langgraph_sdk import get_client

from tests.server.agent_protocol.conftest import SAMPLE_GRAPH
from tests.server.agent_protocol.support import ServerProcess

METRIC = "agentic_stream_first_byte_seconds"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("ap-first-byte"), {"AGENTIC_GRAPH_REF": SAMPLE_GRAPH}) as s:
        yield s


def _histogram(server: ServerProcess) -> tuple[float, float]:
    """(count, sum) of the histogram on ``/metrics``."""
    values = {}
    for line in httpx.get(server.url + "/metrics", timeout=10).text.splitlines():
        for field in ("_count", "_sum"):
            if line.startswith(METRIC + field + " "):
                values[field] = float(line.rsplit(" ", 1)[1])
    return values["_count"], values["_sum"]


async def test_each_stream_is_timed_once_within_what_the_client_saw(server: ServerProcess) -> None:
    assert _histogram(server) == (0.0, 0.0)
    sdk = get_client(url=server.url, api_key=server.api_key)
    try:
        thread_id = (await sdk.threads.create())["thread_id"]
        async with httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=30) as http:
            body = {"assistant_id": "agent", "input": {"ticks": 2}, "stream_mode": ["custom"]}
            sent = time.perf_counter()
            async with http.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
                assert response.status_code == 200
                chunks = response.aiter_raw()
                await chunks.__anext__()
                client_first_byte = time.perf_counter() - sent
                run_id = response.headers["content-location"].rsplit("/", 1)[1]
                async for _ in chunks:  # to the run's end
                    pass
        count, total = _histogram(server)
        assert count == 1
        assert 0 < total <= client_first_byte

        parts = [p async for p in sdk.runs.stream(None, "agent", input={"ticks": 1}, stream_mode="custom")]
        assert [p.event for p in parts][-1] == "custom"
        assert _histogram(server)[0] == 2

        # Rejoining the ended run's stream replays its events: a third stream, a third observation.
        replayed = [p async for p in sdk.runs.join_stream(thread_id, run_id, last_event_id="0")]
        assert replayed
        assert _histogram(server)[0] == 3
        # Other requests are not streams: they are not counted.
        await sdk.runs.get(thread_id, run_id)
        assert _histogram(server)[0] == 3
    finally:
        await sdk.aclose()
