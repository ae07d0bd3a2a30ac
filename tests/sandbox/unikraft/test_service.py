"""Hosted apps on the Unikraft backend: service group, scale-to-zero and wake, TTL, terminate."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from sandbox.backends.unikraft import UnikraftSandbox
from sandbox.base import EndReason, RunRequest
from sandbox.errors import SandboxStartError
from sandbox.unikraft import UnikraftServiceHandle
from tests.sandbox.unikraft.conftest import ukc_settings
from tests.sandbox.unikraft.fake_server import FakeServer

# Listens on $PORT (on 127.0.0.1 here: the fake's instances share the host's loopback).
APP = """
import http.server, json, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        env = os.environ
        body = json.dumps({"path": self.path, "host": env["HOST"], "port": env["PORT"]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_request() -> RunRequest:
    return RunRequest(files={"app.py": APP}, language="python", entry="app.py", labels={"app": "demo"})


async def get(handle: UnikraftServiceHandle, path: str) -> dict[str, str]:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(handle.connect_url.rstrip("/") + path, headers=handle.headers)
    response.raise_for_status()
    return json.loads(response.text)  # type: ignore[no-any-return]


async def test_app_is_served_scales_to_zero_and_wakes(fake: FakeServer) -> None:
    settings = ukc_settings(fake, app_cooldown_ms=200)
    async with UnikraftSandbox(settings) as box:
        port = free_port()
        before = len(fake.state.created_specs)
        handle = await box.start_service(app_request(), port=port)
        (spec,) = fake.state.created_specs[before:]
        group = spec["service_group"]
        assert group["services"] == [{"port": 443, "destination_port": port, "handlers": ["tls", "http"]}]
        label = group["domains"][0]["name"]
        assert len(label) == 32 and int(label, 16) >= 0  # 128 random bits
        assert spec["scale_to_zero"] == {"policy": "on", "stateful": True, "cooldown_time_ms": 200}
        assert spec["name"].startswith("agentic-app-") and "agentic-kind=app" in spec["tags"]
        assert handle.url == f"https://{label}.fake0.unikraft.app/" and handle.socket_path is None
        assert await handle.wait_ready(10)
        assert await get(handle, "/hello") == {"path": "/hello", "host": "0.0.0.0", "port": str(port)}

        (instance,) = fake.state.instances.values()
        seen, woken = instance.plugin_requests, instance.woken
        for _ in range(100):
            if instance.state == "standby":
                break
            await asyncio.sleep(0.02)
        assert instance.state == "standby"  # idle past the cooldown: scaled to zero
        await asyncio.sleep(0.3)
        assert instance.plugin_requests == seen  # the handle does not keep it awake
        assert (await get(handle, "/again"))["path"] == "/again"  # a request wakes it
        assert instance.woken == woken + 1 and handle.running
        assert "serving" in await handle.fetch_logs()

        ended: list[str] = []

        async def on_exit() -> None:
            ended.append("x")

        handle.on_exit(on_exit)
        await handle.terminate()
        await handle.terminate()  # idempotent
        assert fake.instance_names() == [] and not handle.running and ended == ["x"]


async def test_app_is_deleted_at_its_ttl(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    handle = await ukc.start_service(app_request(), port=free_port(), ttl_s=0.5)
    assert fake.instance_names()
    result = await asyncio.wait_for(handle.wait(), 10)
    assert result is not None and result.reason is EndReason.TIMEOUT
    assert fake.instance_names() == []


async def test_a_failed_start_leaves_no_instance(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    fake.cloud.fail("POST", r"/fs/write$", 500, message="disk on fire")
    with pytest.raises(SandboxStartError, match="disk on fire"):
        await ukc.start_service(app_request(), port=free_port())
    with pytest.raises(SandboxStartError, match="not a TCP port"):
        await ukc.start_service(app_request(), port=0)
