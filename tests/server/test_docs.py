"""OpenAPI docs work offline: /docs references only this server's URLs, and they all load."""

from __future__ import annotations

import re

import httpx


def test_docs_use_only_local_assets(anon: httpx.Client) -> None:
    page = anon.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "swagger" in html.lower()
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""url\s*:\s*["']([^"']+)["']""", html)
    assert urls, html
    assert not re.search(r"https?://", html), "the docs page references an external URL"
    for url in set(urls):
        assert url.startswith("/"), url
        response = anon.get(url)
        assert response.status_code == 200, url
        assert response.content, url


def test_openapi_lists_the_api(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/workspaces",
        "/v1/workspaces/{workspace_id}/files/{path}",
        "/v1/workspaces/{workspace_id}/runs",
        "/v1/workspaces/{workspace_id}/runs/stream",
        "/v1/workspaces/{workspace_id}/diff/{path}",
        "/healthz",
    ):
        assert path in paths, sorted(paths)
    tags = {tag for item in paths.values() for op in item.values() for tag in op.get("tags", [])}
    assert {"workspaces", "files", "versions", "runs", "health"} <= tags
