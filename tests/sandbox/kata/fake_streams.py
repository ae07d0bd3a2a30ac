"""The fake API server's streams: watches, container logs and ``exec`` (see :mod:`fake_kube`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.sandbox.kata.fake_kubelet import Json, kill_exec

if TYPE_CHECKING:
    from tests.sandbox.kata.fake_kube import FakeKube

__all__ = [
    "StreamCut",
    "error",
    "exec_pod",
    "exec_problems",
    "log_response",
    "matches",
    "status_body",
    "watch_response",
]


def status_body(code: int, reason: str, message: str) -> Json:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def error(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse(status_body(code, reason, message), status_code=code)


def matches(obj: Json, label_selector: str | None, field_selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        key, _, value = term.partition("=")
        if (value and labels.get(key) != value) or (not value and key not in labels):
            return False
    for term in filter(None, (field_selector or "").split(",")):
        key, _, value = term.partition("=")
        if key == "metadata.name" and obj.get("metadata", {}).get("name") != value:
            return False
    return True


class StreamCut(Exception):
    """Raised inside a streaming body to drop the connection mid-stream (a disconnect)."""


def watch_response(kube: FakeKube, resource: str, namespace: str, query: Any) -> Response:
    """A watch: events after ``resourceVersion``; the test may cut it (drop, or 410 Gone)."""
    since = int(query.get("resourceVersion") or 0)
    timeout = float(query.get("timeoutSeconds") or 300)
    cut = kube.watch_cuts.popleft() if kube.watch_cuts and resource == "pods" else None
    if resource == "pods":
        kube.watch_versions.append(query.get("resourceVersion"))
    labels, fields = query.get("labelSelector"), query.get("fieldSelector")

    async def body() -> AsyncIterator[bytes]:
        index, sent = 0, 0
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            await kube.changed.until(lambda i=index: len(kube.events) > i, end - loop.time())
            fresh, index = kube.events[index:], len(kube.events)
            for version, res, ns, kind, obj in fresh:
                if res != resource or (namespace and ns != namespace) or version <= since:
                    continue
                if not matches(obj, labels, fields):
                    continue
                if cut == "gone":
                    yield (
                        json.dumps(
                            {
                                "type": "ERROR",
                                "object": status_body(410, "Expired", "too old resource version"),
                            }
                        ).encode()
                        + b"\n"
                    )
                    return
                yield json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                sent += 1
                if cut == "abort":
                    raise StreamCut("watch dropped by the test")

    return StreamingResponse(body(), media_type="application/json")


def log_response(kube: FakeKube, namespace: str, name: str, follow: bool) -> Response:
    """A container log, followed until the container ends; the test may drop it after one line."""
    runtime = kube.kubelet.runtimes.get((namespace, name))
    if runtime is None or not runtime.started:
        return error(
            400,
            "BadRequest",
            f'container "sandbox" in pod "{name}" is waiting to start: ContainerCreating',
        )
    cut = kube.log_cuts.popleft() if kube.log_cuts else None

    async def body() -> AsyncIterator[bytes]:
        position = 0
        if cut == "midline":  # the first line and a piece of the next, then a clean end
            await runtime.changed.until(lambda: runtime.log.count(b"\n") >= 2 or runtime.done)
            second = runtime.log.find(b"\n") + 1
            yield bytes(runtime.log[: second + 5])
            return
        while True:
            if follow:
                await runtime.changed.until(lambda p=position: len(runtime.log) > p or runtime.done)
            data = bytes(runtime.log[position:])
            done = runtime.done or not follow
            if cut == "abort" and data:
                yield data[: data.find(b"\n") + 1 or len(data)]
                raise StreamCut("log stream dropped by the test")
            position += len(data)
            if data:
                yield data
            if done and position >= len(runtime.log):
                return

    return StreamingResponse(body(), media_type="text/plain")


_FLAGS = ("stdin", "stdout", "stderr", "tty")


def exec_problems(pod: Json, query: Any, protocols: list[str]) -> list[str]:
    """What the API server would refuse in an exec request (its query and subprotocol)."""
    found = []
    if not query.getlist("command"):
        found.append("exec: no command given")
    names = [c["name"] for c in pod["spec"]["containers"]]
    container = query.get("container")
    if container is None and len(names) > 1:
        found.append(f"exec: a container name must be given, one of {names}")
    if container is not None and container not in names:
        found.append(f"exec: container {container!r} is not valid for pod (containers: {names})")
    for flag in _FLAGS:
        if query.get(flag) not in (None, "true", "false"):
            found.append(f"exec: {flag}={query.get(flag)!r} is not a boolean")
    if not any(query.get(flag) == "true" for flag in ("stdin", "stdout", "stderr")):
        found.append("exec: you must specify at least 1 of stdin, stdout, stderr")
    if query.get("tty") == "true":
        found.append("exec: tty is not used by the platform (its output would lose the channels)")
    if "v4.channel.k8s.io" not in protocols:
        found.append(f"exec: subprotocol v4.channel.k8s.io not offered ({protocols})")
    return found


async def exec_pod(kube: FakeKube, websocket: WebSocket) -> None:
    """``exec`` over the ``v4.channel.k8s.io`` websocket protocol: stdin 0, stdout 1, stderr 2, status 3.

    The request is checked as the API server does (command, container, the stream flags, the
    subprotocol; a bad one is kept in ``kube.invalid`` and refused); a fault the test injected for
    ``GET .../exec`` refuses the handshake with its status; the command runs in the pod's running
    container (:meth:`FakeKubelet.exec_process`).
    """
    namespace, name = websocket.path_params["namespace"], websocket.path_params["name"]
    path = websocket.url.path
    kube.requests.append(("GET", path))
    for fault in kube.faults:
        if fault.times > 0 and fault.method == "GET" and fault.path.search(path):
            fault.times -= 1
            denial = error(fault.status, "Forbidden", f"injected {fault.status}")
            await websocket.send_denial_response(denial)
            return
    pod = kube.objects.get(("pods", namespace, name))
    if pod is None:
        await websocket.send_denial_response(error(404, "NotFound", f'pods "{name}" not found'))
        return
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    problems = exec_problems(pod, websocket.query_params, protocols)
    if problems:
        kube.invalid.extend(problems)
        await websocket.send_denial_response(error(400, "BadRequest", "; ".join(problems)))
        return
    process = await kube.kubelet.exec_process(pod, websocket.query_params.getlist("command"))
    if process is None:
        message = (
            f'unable to upgrade connection: container not found ("{pod["spec"]["containers"][0]["name"]}")'
        )
        await websocket.send_denial_response(error(400, "BadRequest", message))
        return
    await websocket.accept(subprotocol="v4.channel.k8s.io")
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None

    async def pipe_in() -> None:
        with contextlib.suppress(WebSocketDisconnect, ConnectionError, RuntimeError):
            while True:
                data = await websocket.receive_bytes()
                if data[:1] == b"\x00":
                    process.stdin.write(data[1:])  # type: ignore[union-attr]
                    await process.stdin.drain()  # type: ignore[union-attr]

    async def pipe_out(stream: asyncio.StreamReader, channel: int) -> None:
        while data := await stream.read(65536):
            await websocket.send_bytes(bytes([channel]) + data)

    reader = asyncio.create_task(pipe_in())
    try:
        await asyncio.gather(pipe_out(process.stdout, 1), pipe_out(process.stderr, 2))
        code = await process.wait()
        kube.kubelet.exec_ended(namespace, name)
        status: Json = (
            {"metadata": {}, "status": "Success"}
            if code == 0
            else {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        )
        await websocket.send_bytes(b"\x03" + json.dumps(status).encode())
        await websocket.close()
    finally:
        reader.cancel()
        if process.returncode is None:
            kill_exec(process)
            await process.wait()
