"""Rate limit per API key: a token bucket in memory; 429 with Retry-After and the JSON error envelope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from server.app import create_app
from server.ratelimit import RateLimiter
from tests.server.conftest import make_settings
from tests.server.support import LiveServer, assert_error

KEY_A = "rate-a-" + uuid.uuid4().hex
KEY_B = "rate-b-" + uuid.uuid4().hex


def test_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert [limiter.acquire("k") for _ in range(2)] == [0.0, 0.0]
    wait = limiter.acquire("k")
    assert wait == pytest.approx(1.0)  # 60/min: one token a second
    assert RateLimiter.retry_after(wait) == 1 and RateLimiter.retry_after(0.2) == 1
    assert limiter.acquire("other") == 0.0  # buckets are per key
    now[0] += 0.5
    assert limiter.acquire("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.acquire("k") == 0.0
    now[0] += 3600  # a long pause refills to the burst size, not beyond
    assert [limiter.acquire("k") for _ in range(3)][-1] > 0
    assert RateLimiter(per_minute=0, burst=1).acquire("k") == 0.0  # 0 turns the limit off


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path_factory.mktemp("ratelimit"),
        api_keys=[f"alpha:{KEY_A}", f"beta:{KEY_B}"],
        rate_limit_per_minute=6,
        rate_limit_burst=3,
    )
    with LiveServer(create_app(settings)) as server:
        yield server


def test_429_with_retry_after_per_key(limited_server: LiveServer) -> None:
    with (
        httpx.Client(base_url=limited_server.url, headers={"X-API-Key": KEY_A}) as a,
        httpx.Client(base_url=limited_server.url, headers={"X-API-Key": KEY_B}) as b,
    ):
        assert [a.get("/v1/workspaces").status_code for _ in range(3)] == [200, 200, 200]
        refused = a.get("/v1/workspaces")
        error = assert_error(refused, 429, "rate_limited")
        assert "retry" in str(error["message"])
        assert 1 <= int(refused.headers["Retry-After"]) <= 10  # 6/min: a token every 10 s
        assert_error(a.post("/threads/search", json={}), 429, "rate_limited")  # Agent Protocol too
        assert b.get("/v1/workspaces").status_code == 200  # another key has its own bucket
        # Unauthenticated endpoints are not limited.
        assert all(a.get("/healthz").status_code == 200 for _ in range(5))
        metrics = a.get("/metrics").text
        assert "agentic_rate_limited_requests_total" in metrics
