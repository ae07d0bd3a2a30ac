"""Inputs a client controls never cause a 5xx: each is a 4xx saying what to fix, and nothing stored is lost.

Found by the security review and by schemathesis (coverage and stateful phases, test_schemathesis.py).
"""

from __future__ import annotations

import httpx
import pytest

from tests.server.support import assert_error

BIG = str(2**70)  # past 64 bits: the database drivers overflow on it


@pytest.fixture
def ws(client: httpx.Client, workspace_id: str) -> str:
    """A workspace with ``a.py`` at version 1."""
    response = client.put(f"/v1/workspaces/{workspace_id}/files/a.py", json={"content": "print(1)\n"})
    assert response.status_code == 200, response.text
    return f"/v1/workspaces/{workspace_id}"


@pytest.mark.parametrize(
    ("method", "url", "params", "body", "field"),
    [
        ("GET", "/files/a.py", {"version": BIG}, None, "version"),
        ("GET", "/files/a.py", {"version": "v" + BIG}, None, "version"),
        ("GET", f"/versions/{BIG}/a.py", None, None, "version"),
        ("GET", "/diff/a.py", {"from": BIG, "to": "1"}, None, "from"),
        ("GET", "/diff/a.py", {"from": "1", "to": BIG}, None, "to"),
        ("POST", "/rollback/a.py", None, {"version": int(BIG)}, "version"),
        ("POST", "/rollback/a.py", None, {"version": BIG}, "version"),
        ("POST", "/runs", None, {"path": "a.py", "version": int(BIG)}, "version"),
    ],
)
def test_version_numbers_past_64_bits_are_422(
    client: httpx.Client,
    ws: str,
    method: str,
    url: str,
    params: dict[str, str] | None,
    body: dict[str, object] | None,
    field: str,
) -> None:
    response = client.request(method, ws + url, params=params, json=body)
    error = assert_error(response, 422, "validation_error")
    assert field in str(error["message"]), error
    assert "9223372036854775807" in response.text
    assert client.get(f"{ws}/history/a.py").json()[0]["number"] == 1  # nothing stored, nothing lost


def test_non_ascii_digits_name_an_id_not_a_number(client: httpx.Client, ws: str) -> None:
    # "²".isdigit() is true but int("²") fails: it is an (unknown) version id.
    assert_error(client.get(f"{ws}/files/a.py", params={"version": "²"}), 404, "version_not_found")
    assert_error(client.get(f"{ws}/versions/²/a.py"), 404, "version_not_found")


@pytest.mark.parametrize("name", ["   ", "\t\n", "a\x00b"])
def test_blank_workspace_name_is_422(client: httpx.Client, name: str) -> None:
    before = len(client.get("/v1/workspaces").json())
    error = assert_error(client.post("/v1/workspaces", json={"name": name}), 422, "validation_error")
    assert "name must not" in str(error["message"])
    assert len(client.get("/v1/workspaces").json()) == before


@pytest.mark.parametrize(("first", "second"), [("pkg", "pkg/mod.py"), ("pkg/mod.py", "pkg")])
def test_file_and_directory_of_one_name_is_409(
    client: httpx.Client, workspace_id: str, first: str, second: str
) -> None:
    base = f"/v1/workspaces/{workspace_id}"
    assert client.put(f"{base}/files/{first}", json={"content": "kept\n"}).status_code == 200
    error = assert_error(client.put(f"{base}/files/{second}", json={"content": "no\n"}), 409, "path_conflict")
    assert repr(first) in str(error["message"]) and repr(second) in str(error["message"])
    assert [f["path"] for f in client.get(f"{base}/files").json()] == [first]
    assert client.get(f"{base}/files/{first}").json()["content"] == "kept\n"
    # The workspace stays usable: a run of the kept file still materialises it.
    run = client.post(f"{base}/runs", json={"code": "print('ok')"})
    assert run.status_code == 200, run.text
    assert run.json()["stdout"] == "ok\n"


def test_unstorable_json_is_422(client: httpx.Client, ws: str) -> None:
    # A lone surrogate parses from JSON ("\ud800") but no UTF-8 store can keep it.
    raw = '{"name": "bad \\ud800 name"}'
    response = client.post("/v1/workspaces", content=raw, headers={"Content-Type": "application/json"})
    assert "surrogate" in str(assert_error(response, 422, "validation_error")["message"])
    raw = '{"content": "x", "message": "\\udfff"}'
    response = client.put(f"{ws}/files/a.py", content=raw, headers={"Content-Type": "application/json"})
    assert "message" in str(assert_error(response, 422, "validation_error")["message"])
    assert client.get(f"{ws}/history/a.py").json()[0]["number"] == 1
