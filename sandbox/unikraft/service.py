"""A hosted app on Unikraft Cloud: an instance behind a service group, reached by its URL.

Why a subclass of :class:`~sandbox.service.ServiceHandle`: callers keep one handle type
(``terminate``, ``wait``, ``on_exit``, ``running``), while the app is reached over HTTPS at its
own domain instead of a host Unix socket (its ``endpoint`` is that URL; ``socket_path`` stays None).

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
import time

import httpx
from unikraft_cloud import UnikraftCloudError
from unikraft_cloud.api.plugins.sandbox import models

from sandbox.base import OutputChunk
from sandbox.service import LOG_CHARS, ServiceEndpoint, ServiceHandle
from sandbox.unikraft.instances import InstanceControl

__all__ = ["UnikraftServiceHandle"]

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
        self.endpoint = ServiceEndpoint(url=self.url)
        # Where an HTTP client connects: the public URL, or an operator's edge (Host carries the app).
        self.connect_url = (settings.app_edge_url.rstrip("/") + "/") if settings.app_edge_url else self.url
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
