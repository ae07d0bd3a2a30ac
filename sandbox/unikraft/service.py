"""A hosted app on Unikraft Cloud: an instance behind a service group, reached by its URL.

:func:`start_app` makes it (the backend's ``start_service`` plans the job, then hands it here) and
returns its :class:`UnikraftServiceHandle`.

Why a subclass of :class:`~sandbox.service.ServiceHandle`: callers keep one handle type
(``terminate``, ``wait``, ``on_exit``, ``running``), while the app is reached over HTTPS at its
own domain instead of a host Unix socket (its ``endpoint`` is :attr:`connect_url` with ``Host`` naming
the app, which the platform's reverse proxy dials; ``socket_path`` stays None).

The handle's background task does not poll the instance: with scale-to-zero the platform puts an
idle app in standby and wakes it on the next request, and any request of ours would keep it awake.
The task only waits for the TTL; terminate (or the TTL) deletes the instance. Output is fetched on
demand (:meth:`UnikraftServiceHandle.fetch_logs`), which wakes the app like a request does.

Reachability: the domain is a random 128-bit label under the metro's domain, so knowing the URL is
what grants access; the platform's reverse proxy (``/apps/{id}/``) adds its token check on top, but
whoever learns the URL reaches the app directly. See the README's Unikraft section.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import secrets
import time

import httpx
from unikraft_cloud import Instance, UnikraftCloudError
from unikraft_cloud.api.plugins.sandbox import models

from sandbox.base import EndReason, OutputChunk, RunResult
from sandbox.errors import SandboxStartError
from sandbox.service import LOG_CHARS, ServiceEndpoint, ServiceHandle
from sandbox.unikraft.execution import start_command, upload_files
from sandbox.unikraft.instances import InstanceControl
from sandbox.unikraft.request import InstanceJob

__all__ = ["UnikraftServiceHandle", "start_app"]

KILLED_EXIT = -9

logger = logging.getLogger(__name__)


class UnikraftServiceHandle(ServiceHandle):
    """A started app: its public ``url``, where to connect (``connect_url`` + ``Host: host``)."""

    def __init__(
        self,
        name: str,
        *,
        control: InstanceControl,
        instance_uuid: str,
        command_uuid: str,
        host: str,
        expires_at: float,
    ) -> None:
        super().__init__(name)
        settings = control.settings
        self.instance_uuid = instance_uuid
        self.command_uuid = command_uuid
        self.host = host
        self.url = f"https://{host}/"
        # Where an HTTP client connects: the public URL, or an operator's edge (Host carries the app).
        self.connect_url = (settings.app_edge_url.rstrip("/") + "/") if settings.app_edge_url else self.url
        self.endpoint = ServiceEndpoint(url=self.connect_url, host=host)
        self.expires_at = expires_at
        self._control = control

    @property
    def headers(self) -> dict[str, str]:
        """Headers a request to :attr:`connect_url` must carry to reach this app."""
        return {"host": self.host}

    async def wait_ready(self, timeout_s: float = 20.0) -> bool:
        """Wait until the app answers HTTP at its URL (False: it ended or timed out)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline and self.running:
                try:
                    await client.get(self.connect_url, headers=self.headers)
                    return True
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        return False

    async def fetch_logs(self) -> str:
        """Read the newest output of the app into :meth:`logs` and return it (wakes an app in standby)."""
        try:
            api = await self._control.sandbox(self.instance_uuid).api()
            res = await api.commands.get_command_logs(self.command_uuid, body=_tail(0, 0))
            data = res.data or models.CommandLogsData()
            out_total, err_total = data.stdout_available or 0, data.stderr_available or 0
            if max(out_total, err_total) > LOG_CHARS:  # keep the newest, as the local handle does
                body = _tail(max(0, out_total - LOG_CHARS), max(0, err_total - LOG_CHARS))
                data = (await api.commands.get_command_logs(self.command_uuid, body=body)).data or data
        except UnikraftCloudError as exc:
            logger.info("unikraft: could not read the logs of app %s: %s", self.name, exc)
            return self.logs()
        self._logs.clear()
        self._log_chars = 0
        for encoded in (data.stdout, data.stderr):
            text = base64.b64decode(encoded or "").decode("utf-8", "replace")
            self.put_nowait(OutputChunk(stream="stdout", data=text))
        return self.logs()


def _tail(stdout_offset: int, stderr_offset: int) -> models.CommandLogsRequest:
    """Both streams from the given offsets, at most :data:`LOG_CHARS` bytes each."""
    return models.CommandLogsRequest(
        stdout=models.CommandLogsRange(offset=stdout_offset, limit=LOG_CHARS),
        stderr=models.CommandLogsRange(offset=stderr_offset, limit=LOG_CHARS),
    )


async def start_app(
    control: InstanceControl, job: InstanceJob, *, name: str | None, port: int, ttl_s: float | None
) -> UnikraftServiceHandle:
    """Create the app's instance behind a service group, start its command, and hold it until its TTL.

    The instance scales to zero when idle (stateful: the program survives standby) and wakes on the
    next request, if ``app_scale_to_zero``; it is deleted by ``terminate()`` or after ``ttl_s``
    (default ``app_ttl_s``), by the handle or, if this process is gone, the reaper.
    """
    settings = control.settings
    ttl = ttl_s if ttl_s is not None else settings.app_ttl_s
    expires = control.now() + ttl
    domain = secrets.token_hex(16)  # the app's URL is its capability: 128 random bits
    extra: dict[str, object] = {
        "service_group": {
            "services": [
                {"port": settings.app_public_port, "destination_port": port, "handlers": ["tls", "http"]}
            ],
            "domains": [{"name": domain}],
        }
    }
    if settings.app_scale_to_zero:
        extra["scale_to_zero"] = {
            "policy": "on",
            "stateful": True,
            "cooldown_time_ms": settings.app_cooldown_ms,
        }
    instance = await control.create(
        kind="app",
        image=job.image,
        memory_mb=job.limits.memory_mb,
        vcpus=max(1, math.ceil(job.limits.cpus)),
        expires_at=expires,
        extra=extra,
    )
    uuid = instance.uuid or ""
    try:
        host = _app_host(instance)
        sandbox = control.sandbox(uuid)
        with control.errors(f"starting app in instance {uuid}"):
            await sandbox.wait_ready(timeout=settings.boot_timeout_s)
            await upload_files(sandbox, job)
            command = await start_command(await sandbox.api(), job)
    except BaseException:
        await asyncio.shield(control.delete(uuid))
        raise
    handle = UnikraftServiceHandle(
        name or instance.name or "app",
        control=control,
        instance_uuid=uuid,
        command_uuid=command,
        host=host,
        expires_at=expires,
    )
    handle.start(_hold(control, handle, instance))
    return handle


async def _hold(control: InstanceControl, handle: UnikraftServiceHandle, instance: Instance) -> RunResult:
    """Keep the app until its TTL (no polling: standby stays standby); then delete it."""
    try:
        await asyncio.sleep(max(0.0, handle.expires_at - control.now()))
    finally:
        cleanup = asyncio.ensure_future(control.delete(handle.instance_uuid))
        try:
            await asyncio.shield(cleanup)
        except asyncio.CancelledError:
            await cleanup
            raise
    logger.info("unikraft: app %s reached its TTL and was deleted", handle.name)
    return RunResult(
        exit_code=KILLED_EXIT,
        stdout="",
        stderr="",
        reason=EndReason.TIMEOUT,
        boot_s=(instance.boot_time_us or 0) / 1e6,
        backend="unikraft",
    )


def _app_host(instance: Instance) -> str:
    """The public domain the platform gave the app's service group."""
    group = instance.service_group
    for domain in (group.domains if group is not None else None) or ():
        if domain.fqdn:
            return domain.fqdn.rstrip(".")
    raise SandboxStartError(f"Unikraft Cloud gave app instance {instance.uuid} no domain")
