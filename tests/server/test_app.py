"""App-level behaviour: settings, CORS (any origin by default), chunked bodies, 500s without traces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pydantic
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.config import Settings
from tests.server.support import API_KEY, MAX_REQUEST_BYTES, LiveServer, assert_error
from workspace.config import WorkspaceSettings


def test_api_keys_and_cors_parse_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_API_KEYS", " key-number-one , key-number-two ,")
    monkeypatch.setenv("AGENTIC_CORS_ORIGINS", "http://a.test,http://b.test")
    settings = Settings()
    assert settings.api_keys == ["key-number-one", "key-number-two"] and settings.auth_enabled
    assert settings.cors_origins == ["http://a.test", "http://b.test"]
    assert "key-number-one" not in repr(settings)


def test_auth_is_off_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTIC_API_KEYS", raising=False)
    assert Settings().auth_enabled is False


@pytest.mark.parametrize("key", ["changethis", "short"])
def test_placeholder_keys_are_refused(key: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings(api_keys=[key])


def _boom() -> None:
    raise RuntimeError("secret internal detail")


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data: Path = tmp_path_factory.mktemp("app")
    settings = Settings(
        api_keys=[API_KEY],
        max_request_bytes=MAX_REQUEST_BYTES,
        workspace=WorkspaceSettings(database_url=f"sqlite+aiosqlite:///{data / 'ws.db'}"),
    )
    app: FastAPI = create_app(settings)
    app.add_api_route("/v1/boom", _boom)  # a handler with a bug, to see what a 500 looks like
    with LiveServer(app) as server:
        yield server


def test_unexpected_error_is_500_without_trace(app_server: LiveServer) -> None:
    response = httpx.get(f"{app_server.url}/v1/boom", timeout=30)
    error = assert_error(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert error["message"] == "internal server error"


def test_cors_allows_any_origin_by_default(app_server: LiveServer) -> None:
    """Header-authenticated browser clients of any origin work, as with the LangGraph server."""
    response = httpx.get(f"{app_server.url}/healthz", headers={"Origin": "http://ui.test"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers  # no cookies cross-origin
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"content-location", "location", "x-pagination-next", "x-pagination-total"} <= exposed


@pytest.mark.parametrize(("origins", "allowed"), [(["http://ui.test"], "http://ui.test"), ([], None)])
def test_cors_origins_narrow_or_turn_it_off(tmp_path: Path, origins: list[str], allowed: str | None) -> None:
    settings = Settings(
        cors_origins=origins,
        workspace=WorkspaceSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}"),
    )
    with LiveServer(create_app(settings)) as server:
        for origin in ("http://ui.test", "http://evil.test"):
            response = httpx.get(f"{server.url}/healthz", headers={"Origin": origin}, timeout=30)
            expected = allowed if origin == allowed else None
            assert response.headers.get("access-control-allow-origin") == expected


def test_chunked_body_over_the_limit_is_413(app_server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"content": "'
        for _ in range(MAX_REQUEST_BYTES // 65536 + 2):
            yield b"z" * 65536
        yield b'"}'

    headers = {"X-API-Key": API_KEY, "content-type": "application/json"}
    with httpx.Client(base_url=app_server.url, headers=headers, timeout=60) as client:
        ws = client.post("/v1/workspaces", json={"name": "chunked"}).json()["id"]
        response = client.put(f"/v1/workspaces/{ws}/files/big.txt", content=chunks())
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "request_too_large")
        assert client.get(f"/v1/workspaces/{ws}/files").json() == []


def test_the_startup_heap_is_frozen_while_the_app_serves_and_freed_after(tmp_path: Path) -> None:
    """Full GC passes skip what startup built (server.heap); shutting the app down hands it back."""
    import gc

    gc.unfreeze()
    settings = Settings(workspace=WorkspaceSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}"))
    with LiveServer(create_app(settings)) as server:
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 10_000, frozen  # the imported libraries and the opened services, at least
    assert gc.get_freeze_count() == 0
