"""The sandbox plugin of the fake Unikraft Cloud: commands and files inside one instance.

Reached at ``/v1/instances/{uuid}/plugins/sandbox/...`` as the platform proxies it. An instance that
is not running has no plugin to answer: 503 (stopped, crashed, standby is woken first as a request
through the edge would), 404 when the instance does not exist. A wait that runs out answers 408, a
command that does not exist 404 with an empty body, as the plugin's specification says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal as signals
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.sandbox.unikraft.fake_state import FakeCommand, FakeInstance
from tests.sandbox.unikraft.fake_wire import PLUGIN, BodyError, body_json, envelope, sm, strict

if TYPE_CHECKING:
    from tests.sandbox.unikraft.fake_api import FakeCloud

NOT_RUNNING = 503


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _instance(fake: FakeCloud, request: Request) -> FakeInstance:
    instance = fake.state.instances.get(request.path_params["uuid"])
    if instance is None:
        raise _Refusal(JSONResponse({"status": "error", "message": "No such instance"}, status_code=404))
    instance.plugin_requests += 1
    fake.state.touch(instance)
    if instance.state != "running":
        message = f"instance {instance.uuid} is {instance.state}: plugin unavailable"
        raise _Refusal(JSONResponse({"status": "error", "message": message}, status_code=NOT_RUNNING))
    return instance


def _command(instance: FakeInstance, request: Request) -> FakeCommand:
    command = instance.commands.get(request.path_params["command"])
    if command is None:
        raise _Refusal(Response(status_code=404))
    return command


def _plugin(
    handler: Callable[[FakeCloud, Request, FakeInstance], Any],
) -> Callable[[FakeCloud, Request], Any]:
    async def wrapped(fake: FakeCloud, request: Request) -> Response:
        try:
            return await handler(fake, request, _instance(fake, request))  # type: ignore[no-any-return]
        except _Refusal as refusal:
            return refusal.response

    return wrapped


def _ok(model: Any, data: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(envelope(model, data))


@_plugin
async def list_commands(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    return _ok(sm.ListCommandsResponse, {"commands": list(instance.commands)})


@_plugin
async def run_command(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    body = strict(sm.RunCommandRequest, await body_json(request))
    if isinstance(body.cmd, list) and not body.cmd:
        raise BodyError("an empty argument vector")
    try:
        command = await fake.state.run_command(instance, body.model_dump(exclude_unset=True))
    except OSError as exc:
        return JSONResponse({"status": "error", "message": f"spawn failed: {exc}"}, status_code=400)
    return _ok(sm.RunCommandResponse, {"uuid": command.uuid})


@_plugin
async def get_command(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    command = _command(instance, request)
    data = {"uuid": command.uuid, "cmdline": command.cmdline, "cwd": command.cwd, "env": command.env}
    if command.exitcode is not None:
        data["exitcode"] = command.exitcode
    return _ok(sm.GetCommandResponse, {k: v for k, v in data.items() if v is not None})


@_plugin
async def delete_command(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    command = _command(instance, request)
    if command.exitcode is None:
        return JSONResponse({"status": "error", "message": "command still running"}, status_code=409)
    instance.commands.pop(command.uuid)
    return _ok(sm.EmptyResponse)


@_plugin
async def command_logs(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    command = _command(instance, request)
    raw = await body_json(request)
    ranges = strict(sm.CommandLogsRequest, raw) if raw is not None else None
    data: dict[str, Any] = {}
    for stream in ("stdout", "stderr"):
        wanted = getattr(ranges, stream) if ranges is not None else sm.CommandLogsRange(offset=0)
        available = command.available(stream)
        if wanted.offset < 0 or wanted.offset > available:
            return JSONResponse({"status": "error", "message": f"offset past {stream}"}, status_code=416)
        chunk = command.read(stream, wanted.offset, wanted.limit)
        data[stream] = base64.b64encode(chunk).decode()
        data[f"{stream}_available"] = available
    return _ok(sm.CommandLogsResponse, data)


@_plugin
async def wait_timeout(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    command = _command(instance, request)
    body = strict(sm.CommandWaitTimeoutRequest, await body_json(request))
    if body.timeout_s < 0:
        raise BodyError("timeout_s must not be negative")
    ended = asyncio.ensure_future(command.ended.wait())
    changed = asyncio.ensure_future(instance.changed.wait())
    try:
        await asyncio.wait({ended, changed}, timeout=body.timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (ended, changed):
            task.cancel()
    if instance.state != "running":
        return JSONResponse({"status": "error", "message": "instance stopped"}, status_code=NOT_RUNNING)
    if command.exitcode is None:
        return JSONResponse({"status": "error", "message": "timed out"}, status_code=408)
    return _ok(sm.EmptyResponse)


@_plugin
async def stdin(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    command = _command(instance, request)
    body = strict(sm.CommandStdinRequest, await body_json(request))
    proc = command.proc
    if proc is None or proc.stdin is None or proc.stdin.is_closing():
        return JSONResponse({"status": "error", "message": "stdin is closed"}, status_code=409)
    try:
        proc.stdin.write(base64.b64decode(body.data))
        await proc.stdin.drain()
        if body.eof:
            proc.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        return JSONResponse({"status": "error", "message": "the command has ended"}, status_code=409)
    return _ok(sm.EmptyResponse)


@_plugin
async def signal(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    command = _command(instance, request)
    body = strict(sm.CommandSignalRequest, await body_json(request))
    number = (
        body.signal
        if isinstance(body.signal, int)
        else getattr(signals, f"SIG{str(body.signal).removeprefix('SIG')}")
    )
    if command.proc is not None and command.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command.proc.pid, int(number))
    return _ok(sm.EmptyResponse)


@_plugin
async def mkdir(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    body = strict(sm.MkdirRequest, await body_json(request))
    if not body.path.startswith("/"):
        raise BodyError("mkdir wants an absolute path")
    try:
        instance.host_path(body.path).mkdir(parents=body.parents, exist_ok=body.parents)
    except OSError as exc:
        return JSONResponse({"status": "error", "message": str(exc)}, status_code=500)
    return _ok(sm.EmptyResponse)


@_plugin
async def write_file(fake: FakeCloud, request: Request, instance: FakeInstance) -> Response:
    body = strict(sm.WriteFileRequest, await body_json(request))
    if not body.path.startswith("/"):
        raise BodyError("write wants an absolute path")
    data = base64.b64decode(body.data) if body.encoding == "base64" else body.data.encode()
    try:
        with instance.host_path(body.path).open("ab" if body.append else "wb") as fh:
            fh.write(data)
    except OSError as exc:
        return JSONResponse({"status": "error", "message": str(exc)}, status_code=500)
    return _ok(sm.EmptyResponse)


def routes(route: Callable[..., Route]) -> list[Route]:
    """The plugin's routes under each instance."""
    c = f"{PLUGIN}/commands/{{command}}"
    return [
        route(f"{PLUGIN}/commands", "GET", list_commands),
        route(f"{PLUGIN}/commands", "POST", run_command),
        route(c, "GET", get_command),
        route(c, "DELETE", delete_command),
        route(f"{c}/logs", "GET", command_logs),
        route(f"{c}/wait_timeout", "POST", wait_timeout),
        route(f"{c}/stdin", "POST", stdin),
        route(f"{c}/signal", "POST", signal),
        route(f"{PLUGIN}/fs/mkdir", "POST", mkdir),
        route(f"{PLUGIN}/fs/write", "POST", write_file),
    ]
