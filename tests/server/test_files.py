"""Files: write, read, list, and every way a bad path or body is refused (nothing stored)."""

from __future__ import annotations

import httpx

from tests.server.support import MAX_FILE_BYTES, MAX_REQUEST_BYTES, assert_error


def _files(client: httpx.Client, workspace_id: str) -> list[dict[str, object]]:
    response = client.get(f"/v1/workspaces/{workspace_id}/files")
    assert response.status_code == 200
    return list(response.json())


def test_write_read_list(client: httpx.Client, workspace_id: str) -> None:
    base = f"/v1/workspaces/{workspace_id}/files"
    first = client.put(
        f"{base}/src/app.py", json={"content": "print(1)\n", "author": "ann", "message": "init"}
    )
    assert first.status_code == 200, first.text
    v1 = first.json()
    assert (v1["path"], v1["number"], v1["author"], v1["message"]) == ("src/app.py", 1, "ann", "init")
    v2 = client.put(f"{base}/src/app.py", json={"content": "print(2)\n"}).json()
    assert v2["number"] == 2 and v2["parent_id"] == v1["id"]
    assert "+print(2)" in v2["diff"]

    latest = client.get(f"{base}/src/app.py").json()
    assert latest["content"] == "print(2)\n" and latest["number"] == 2
    assert client.get(f"{base}/src/app.py", params={"version": 1}).json()["content"] == "print(1)\n"
    assert client.get(f"{base}/src/app.py", params={"version": v1["id"]}).json()["number"] == 1
    listing = _files(client, workspace_id)
    assert [(f["path"], f["number"]) for f in listing] == [("src/app.py", 2)]


def test_unicode_content_round_trips(client: httpx.Client, workspace_id: str) -> None:
    text = "héllo → 世界 🎉\n"
    base = f"/v1/workspaces/{workspace_id}/files"
    assert client.put(f"{base}/u.txt", json={"content": text}).status_code == 200
    assert client.get(f"{base}/u.txt").json()["content"] == text


def test_unknown_file_and_version_are_404(client: httpx.Client, workspace_id: str) -> None:
    base = f"/v1/workspaces/{workspace_id}/files"
    assert_error(client.get(f"{base}/nope.py"), 404, "file_not_found")
    client.put(f"{base}/a.py", json={"content": "x"})
    assert_error(client.get(f"{base}/a.py", params={"version": 7}), 404, "version_not_found")
    assert_error(client.get(f"{base}/a.py", params={"version": "no-such-id"}), 404, "version_not_found")


def test_path_traversal_is_refused(client: httpx.Client, workspace_id: str) -> None:
    base = f"/v1/workspaces/{workspace_id}/files"
    for raw in ("..%2F..%2Fetc%2Fpasswd", "a%2F..%2F..%2Fescape.py", "%2E%2E/x.py"):
        response = client.put(f"{base}/{raw}", json={"content": "x"})
        assert_error(response, 400, "invalid_path")
        assert_error(client.get(f"{base}/{raw}"), 400, "invalid_path")
    assert _files(client, workspace_id) == []


def test_absolute_path_is_refused(client: httpx.Client, workspace_id: str) -> None:
    base = f"/v1/workspaces/{workspace_id}/files"
    assert_error(client.put(f"{base}//etc/passwd", json={"content": "x"}), 400, "invalid_path")
    assert_error(client.put(f"{base}/%2Fetc%2Fpasswd", json={"content": "x"}), 400, "invalid_path")
    assert _files(client, workspace_id) == []


def test_nul_in_path_is_refused(client: httpx.Client, workspace_id: str) -> None:
    response = client.put(f"/v1/workspaces/{workspace_id}/files/a%00b.py", json={"content": "x"})
    assert_error(response, 400, "invalid_path")


def test_50_mb_body_is_413_and_nothing_stored(client: httpx.Client, workspace_id: str) -> None:
    big = "x" * (50 * 1024 * 1024)
    response = client.put(f"/v1/workspaces/{workspace_id}/files/big.txt", json={"content": big})
    error = assert_error(response, 413, "request_too_large")
    assert str(MAX_REQUEST_BYTES) in str(error["message"])
    assert _files(client, workspace_id) == []


def test_file_over_cap_is_413_and_nothing_stored(client: httpx.Client, workspace_id: str) -> None:
    # Under the request cap, over the file cap: the store refuses it.
    content = "y" * (MAX_FILE_BYTES + 1)
    response = client.put(f"/v1/workspaces/{workspace_id}/files/big.txt", json={"content": content})
    assert_error(response, 413, "file_too_large")
    assert _files(client, workspace_id) == []
    ok = client.put(f"/v1/workspaces/{workspace_id}/files/big.txt", json={"content": content[:-1]})
    assert ok.status_code == 200


def test_binary_body_is_415(client: httpx.Client, workspace_id: str) -> None:
    url = f"/v1/workspaces/{workspace_id}/files/blob.bin"
    response = client.put(
        url, content=bytes(range(256)), headers={"content-type": "application/octet-stream"}
    )
    assert_error(response, 415, "unsupported_media_type")
    # JSON content type, but the bytes are not UTF-8.
    response = client.put(
        url, content=b'{"content": "\xff\xfe\x00"}', headers={"content-type": "application/json"}
    )
    assert_error(response, 415, "binary_content")
    assert _files(client, workspace_id) == []


def test_nul_characters_in_content_are_415(client: httpx.Client, workspace_id: str) -> None:
    response = client.put(f"/v1/workspaces/{workspace_id}/files/nul.txt", json={"content": "a\u0000b"})
    assert_error(response, 415, "binary_content")
    assert _files(client, workspace_id) == []


def test_wrong_field_type_names_the_field(client: httpx.Client, workspace_id: str) -> None:
    response = client.put(f"/v1/workspaces/{workspace_id}/files/a.py", json={"content": 12})
    error = assert_error(response, 422, "validation_error")
    assert "content" in str(error["message"])
    response = client.put(f"/v1/workspaces/{workspace_id}/files/a.py", json={"contents": "x"})
    assert "content" in str(assert_error(response, 422)["message"])
