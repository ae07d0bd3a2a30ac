"""Version history, one version, diff and rollback through the API."""

from __future__ import annotations

import httpx

from tests.server.support import assert_error


def _write(client: httpx.Client, workspace_id: str, path: str, content: str) -> dict[str, object]:
    response = client.put(f"/v1/workspaces/{workspace_id}/files/{path}", json={"content": content})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_history_diff_rollback(client: httpx.Client, workspace_id: str) -> None:
    ws = f"/v1/workspaces/{workspace_id}"
    v1 = _write(client, workspace_id, "pkg/m.py", "a = 1\nb = 2\n")
    _write(client, workspace_id, "pkg/m.py", "a = 1\nb = 3\n")
    _write(client, workspace_id, "pkg/m.py", "a = 1\nb = 4\nc = 5\n")

    history = client.get(f"{ws}/history/pkg/m.py").json()
    assert [v["number"] for v in history] == [1, 2, 3]
    assert "content" not in history[0]
    assert history[0]["id"] == v1["id"]

    one = client.get(f"{ws}/versions/2/pkg/m.py").json()
    assert one["content"] == "a = 1\nb = 3\n"
    by_id = client.get(f"{ws}/versions/{v1['id']}/pkg/m.py").json()
    assert by_id["number"] == 1

    diff = client.get(f"{ws}/diff/pkg/m.py", params={"from": 1, "to": 3}).json()
    assert "-b = 2" in diff["diff"] and "+b = 4" in diff["diff"] and "+c = 5" in diff["diff"]
    assert (diff["from_version"], diff["to_version"]) == ("1", "3")

    rolled = client.post(f"{ws}/rollback/pkg/m.py", json={"version": 1, "author": "bob"})
    assert rolled.status_code == 200, rolled.text
    body = rolled.json()
    assert (body["number"], body["content"], body["author"]) == (4, "a = 1\nb = 2\n", "bob")
    assert [v["number"] for v in client.get(f"{ws}/history/pkg/m.py").json()] == [1, 2, 3, 4]
    assert client.get(f"{ws}/files/pkg/m.py").json()["content"] == "a = 1\nb = 2\n"


def test_unknown_versions_are_404(client: httpx.Client, workspace_id: str) -> None:
    ws = f"/v1/workspaces/{workspace_id}"
    _write(client, workspace_id, "a.py", "x\n")
    assert_error(client.get(f"{ws}/versions/9/a.py"), 404, "version_not_found")
    assert_error(client.get(f"{ws}/diff/a.py", params={"from": 1, "to": 9}), 404, "version_not_found")
    assert_error(client.post(f"{ws}/rollback/a.py", json={"version": 9}), 404, "version_not_found")
    assert_error(client.get(f"{ws}/history/missing.py"), 404, "file_not_found")
    assert_error(client.get("/v1/workspaces/nope/history/a.py"), 404, "workspace_not_found")


def test_diff_needs_both_versions(client: httpx.Client, workspace_id: str) -> None:
    _write(client, workspace_id, "a.py", "x\n")
    error = assert_error(client.get(f"/v1/workspaces/{workspace_id}/diff/a.py", params={"from": 1}), 422)
    assert "to" in str(error["message"])
