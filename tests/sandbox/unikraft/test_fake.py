"""The fake checks what it is sent: a body the SDK's models would not accept is refused.

Why test the fake: every other test here relies on "the fake refused no body" (checked after each
test); that check is only worth something if the fake does refuse bad ones.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.unikraft.fake_server import FakeServer


async def send(fake: FakeServer, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {kwargs.pop('token', fake.token)}"}
    async with httpx.AsyncClient(base_url=fake.url, trust_env=False) as client:
        return await client.request(method, path, json=body, headers=headers, **kwargs)


@pytest.mark.parametrize(
    "method, path, body, complaint",
    [
        ("POST", "/v1/instances", {"image": "agentic/base:1", "memroy_mb": 128}, "body.memroy_mb"),
        (
            "POST",
            "/v1/instances",
            {"image": "agentic/base:1", "service_group": {"services": [{"port": 443, "prot": 80}]}},
            "body.service_group.services[0].prot",
        ),
        ("POST", "/v1/instances", {"image": "agentic/base:1", "timeout_s": 5}, "requires autostart"),
        ("PUT", "/v1/instances/start", [{"uuid": "x", "wait": 1}], "body[0].wait"),
        ("DELETE", "/v1/instances", {"uuid": "x"}, "invalid body"),  # a list is required
    ],
)
async def test_platform_bodies_are_checked(
    fake: FakeServer, method: str, path: str, body: Any, complaint: str
) -> None:
    response = await send(fake, method, path, body)
    assert response.status_code == 400 and complaint in response.json()["message"]
    assert fake.cloud.rejected and complaint in fake.cloud.rejected[-1]
    fake.cloud.rejected.clear()


async def test_plugin_bodies_and_queries_are_checked(fake: FakeServer) -> None:
    created = await send(
        fake, "POST", "/v1/instances", {"image": "agentic/base:1", "autostart": True, "timeout_s": 5}
    )
    uuid = created.json()["data"]["instances"][0]["uuid"]
    plugin = f"/v1/instances/{uuid}/plugins/sandbox"
    missing = await send(fake, "POST", f"{plugin}/fs/write", {"path": "/a", "encoding": "utf-8", "data": "x"})
    assert missing.status_code == 400 and "append" in missing.json()["message"]
    query = await send(fake, "GET", "/v1/instances", params={"detials": "true"})
    assert query.status_code == 400 and "detials" in query.json()["message"]
    fake.cloud.rejected.clear()
    anonymous = await send(fake, "GET", "/v1/instances", token="nope")
    assert anonymous.status_code == 401
    deleted = await send(fake, "DELETE", "/v1/instances", [{"uuid": uuid}])
    assert deleted.json()["data"]["instances"][0]["status"] == "success"
    gone = await send(fake, "GET", f"{plugin}/commands")
    assert gone.status_code == 404
