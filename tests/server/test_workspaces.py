"""Workspaces, auth, errors and health through the real HTTP server."""

from __future__ import annotations

import httpx

from tests.server.support import API_KEY, assert_error


def test_create_list_get_workspace(client: httpx.Client) -> None:
    created = client.post("/v1/workspaces", json={"name": "alpha"})
    assert created.status_code == 201
    ws = created.json()
    assert ws["name"] == "alpha" and ws["id"]
    assert client.get(f"/v1/workspaces/{ws['id']}").json() == ws
    assert ws in client.get("/v1/workspaces").json()


def test_unknown_workspace_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/v1/workspaces/does-not-exist"), 404, "workspace_not_found")
    assert_error(client.get("/v1/workspaces/does-not-exist/files"), 404, "workspace_not_found")
    response = client.put("/v1/workspaces/does-not-exist/files/a.py", json={"content": "x"})
    assert_error(response, 404, "workspace_not_found")


def test_missing_field_names_it(client: httpx.Client) -> None:
    error = assert_error(client.post("/v1/workspaces", json={}), 422, "validation_error")
    assert "name" in str(error["message"])


def test_unknown_field_is_refused(client: httpx.Client) -> None:
    error = assert_error(client.post("/v1/workspaces", json={"name": "a", "nmae": "b"}), 422)
    assert "nmae" in str(error["message"])


def test_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post(
        "/v1/workspaces", content=b'{"name": "a",', headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422, "malformed_json")
    assert "JSON" in str(error["message"])


def test_missing_api_key_is_401(anon: httpx.Client) -> None:
    response = anon.get("/v1/workspaces")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_wrong_api_key_is_401(anon: httpx.Client) -> None:
    assert_error(anon.get("/v1/workspaces", headers={"Authorization": "Bearer wrong-key-123"}), 401)
    assert_error(anon.get("/v1/workspaces", headers={"X-API-Key": "wrong-key-123"}), 401)
    assert_error(anon.get("/v1/workspaces", headers={"Authorization": f"Basic {API_KEY}"}), 401)


def test_x_api_key_header_works(anon: httpx.Client) -> None:
    assert anon.get("/v1/workspaces", headers={"X-API-Key": API_KEY}).status_code == 200


def test_unknown_route_and_method_use_the_envelope(client: httpx.Client) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/v1/workspaces"), 405, "method_not_allowed")


def test_healthz_needs_no_key_and_lists_backends(anon: httpx.Client) -> None:
    response = anon.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["auth"] is True
    assert body["store"] == "sqlite"
    assert "local" in body["backends"]
    assert body["backends"]["local"] is None  # the suite runs where bubblewrap works
