"""Runs of workspace files and snippets in the real local sandbox."""

from __future__ import annotations

import httpx

from tests.server.support import assert_error


def _run(client: httpx.Client, workspace_id: str, **body: object) -> httpx.Response:
    return client.post(f"/v1/workspaces/{workspace_id}/runs", json=body)


def _write(client: httpx.Client, workspace_id: str, path: str, content: str) -> None:
    response = client.put(f"/v1/workspaces/{workspace_id}/files/{path}", json={"content": content})
    assert response.status_code == 200, response.text


def test_run_python_file_latest_and_older_version(client: httpx.Client, workspace_id: str) -> None:
    _write(client, workspace_id, "helper.py", "def greet(n):\n    return f'hi {n}'\n")
    _write(client, workspace_id, "main.py", "import sys\nprint('v1', sys.argv[1:])\n")
    _write(client, workspace_id, "main.py", "import helper, sys\nprint(helper.greet(input()))\nsys.exit(3)\n")

    latest = _run(client, workspace_id, path="main.py", stdin="bob\n")
    assert latest.status_code == 200, latest.text
    result = latest.json()
    assert result["stdout"] == "hi bob\n"
    assert (result["exit_code"], result["ok"], result["reason"]) == (3, False, "exit")
    assert (result["language"], result["version"], result["path"]) == ("python", 2, "main.py")
    assert result["tier"] == "light" and result["limits"]["wall_seconds"] > 0
    assert result["backend"]

    older = _run(client, workspace_id, path="main.py", version=1, args=["--x", "y"]).json()
    assert older["stdout"] == "v1 ['--x', 'y']\n" and older["exit_code"] == 0 and older["ok"]
    assert older["version"] == 1


def test_run_python_snippet(client: httpx.Client, workspace_id: str) -> None:
    response = _run(client, workspace_id, code="import sys\nprint(6 * 7)\nprint('oops', file=sys.stderr)\n")
    result = response.json()
    assert (result["stdout"], result["stderr"], result["exit_code"]) == ("42\n", "oops\n", 0)
    assert result["language"] == "python" and result["path"] is None


def test_run_typescript_snippet_and_file(client: httpx.Client, workspace_id: str) -> None:
    code = "const xs: number[] = [1, 2, 3];\nconsole.log(xs.map((x) => x * 2).join(','));\n"
    snippet = _run(client, workspace_id, code=code, language="typescript").json()
    assert snippet["stdout"] == "2,4,6\n", snippet
    assert snippet["language"] == "typescript"
    _write(client, workspace_id, "app.ts", "const n: number = 5;\nconsole.log(`n=${n}`);\n")
    file_run = _run(client, workspace_id, path="app.ts").json()
    assert (file_run["stdout"], file_run["language"], file_run["exit_code"]) == ("n=5\n", "typescript", 0)


def test_run_that_times_out(client: httpx.Client, workspace_id: str) -> None:
    response = _run(client, workspace_id, code="while True:\n    pass\n", limits={"wall_seconds": 1})
    result = response.json()
    assert result["reason"] == "timeout", result
    assert result["ok"] is False
    assert result["limits"]["wall_seconds"] == 1
    assert result["duration_s"] < 10


def test_tier_and_limit_overrides_are_reported(client: httpx.Client, workspace_id: str) -> None:
    result = _run(client, workspace_id, code="print(1)", tier="medium", limits={"memory_mb": 300}).json()
    assert result["tier"] == "medium"
    assert result["limits"]["memory_mb"] == 300


def test_bad_run_requests(client: httpx.Client, workspace_id: str) -> None:
    assert_error(_run(client, workspace_id, code="print(1)", path="a.py"), 422, "validation_error")
    assert_error(_run(client, workspace_id), 422, "validation_error")
    assert_error(_run(client, workspace_id, path="missing.py"), 404, "file_not_found")
    assert_error(_run(client, "no-such-ws", code="print(1)"), 404, "workspace_not_found")
    _write(client, workspace_id, "notes.txt", "hello")
    error = assert_error(_run(client, workspace_id, path="notes.txt"), 400, "invalid_run_request")
    assert "language" in str(error["message"])
    error = assert_error(_run(client, workspace_id, code="1", library_set="nope"), 400, "unknown_library_set")
    assert "base" in str(error["message"])
    error = assert_error(
        _run(client, workspace_id, code="1", limits={"memory_mb": 10**7}), 400, "limits_exceeded"
    )
    assert "memory_mb" in str(error["message"])
    assert_error(_run(client, workspace_id, code="1", limits={"memory_gb": 1}), 422, "validation_error")
    assert_error(_run(client, workspace_id, code="1", tier="huge"), 422, "validation_error")
    assert_error(_run(client, workspace_id, code="1", language="cobol"), 422, "validation_error")


def test_network_is_refused_by_default(client: httpx.Client, workspace_id: str) -> None:
    assert_error(_run(client, workspace_id, code="print(1)", network=True), 403, "network_not_allowed")


def test_sandbox_has_no_network_and_no_host_files(client: httpx.Client, workspace_id: str) -> None:
    code = (
        "import os, socket\n"
        "print(os.path.exists('/work'))\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('net')\n"
        "except OSError:\n    print('no-net')\n"
    )
    result = _run(client, workspace_id, code=code).json()
    assert result["stdout"] == "False\nno-net\n", result
