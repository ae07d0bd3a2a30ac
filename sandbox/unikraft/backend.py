"""``UnikraftSandbox``: the :class:`~sandbox.base.Sandbox` protocol on Unikraft Cloud unikernels.

A run gets an instance of its own (or one from the pool of stopped instances), made from the
library set's image with the sandbox plugin attached; the plugin writes the files and runs the
command; the instance is deleted after the run, whatever happened. The pieces:

* :mod:`~sandbox.unikraft.request` checks the request and plans the job (before any API call);
* :mod:`~sandbox.unikraft.instances` makes, starts, reads and deletes instances (SDK errors are
  turned into :class:`SandboxStartError` / :class:`SandboxBusyError` there);
* :mod:`~sandbox.unikraft.execution` writes the files and follows the command (caps, wall time);
* :mod:`~sandbox.unikraft.pool` and :mod:`~sandbox.unikraft.reaper` keep stopped instances ready
  and remove expired ones.

Limits on Unikraft: ``memory_mb`` is the instance's memory (rounded up to the tier's in pool
mode), running out of it crashes the unikernel and the platform reports it (``reason="oom"``);
``cpus`` becomes whole vCPUs; ``wall_seconds`` is ours: past it the instance is stopped and
deleted (``reason="timeout"``); ``output_bytes`` is ours, per stream. ``cpu_seconds``, ``pids`` and
``disk_mb`` have no per-run knob on the platform: the instance (its memory, vCPUs and wall time)
is the whole box. ``disk_mb`` still bounds the files a run carries in.

``boot_s`` is the boot time the API reports (``boot_time_us``: from the VMM invocation to user
code), included in ``duration_s`` (the command's own time plus ``boot_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx
from unikraft_cloud import Instance, NotFoundError, UnikraftCloud, UnikraftCloudError

from sandbox.base import EndReason, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.errors import SandboxStartError, SandboxUnavailableError
from sandbox.streaming import ChunkQueue, ChunkSink, stream_chunks
from sandbox.unikraft.execution import CommandOutcome, follow_command, start_command, upload_files
from sandbox.unikraft.instances import InstanceControl, describe_stop, end_reason_of_stop
from sandbox.unikraft.pool import InstancePool
from sandbox.unikraft.preflight import PreflightCheck, run_preflight
from sandbox.unikraft.reaper import reap_forever
from sandbox.unikraft.request import InstanceJob, plan_job
from sandbox.unikraft.service import UnikraftServiceHandle
from sandbox.unikraft.settings import UnikraftSettings

__all__ = ["UnikraftSandbox"]

logger = logging.getLogger(__name__)

KILLED_EXIT = -9


class UnikraftSandbox:
    """Runs each request in a Unikraft Cloud instance of its own; see the module docstring."""

    name = "unikraft"

    def __init__(self, settings: UnikraftSettings, client: UnikraftCloud) -> None:
        """Use :meth:`open`; this only wires the parts (no I/O)."""
        self.settings = settings
        self.control = InstanceControl(client, settings)
        self.pool = InstancePool(self.control)
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, settings: UnikraftSettings) -> UnikraftSandbox:
        """Build the SDK client for the configured metro, start the reaper and fill the pool.

        Nothing here fails on an unreachable API: :meth:`preflight` tells, runs raise.
        """
        # Connect and each plain request are bounded; the SDK stretches the read for its waits.
        timeout = httpx.Timeout(settings.request_timeout_s, connect=min(10.0, settings.request_timeout_s))
        client = UnikraftCloud(
            token=settings.token_value() or "",
            base_url=settings.platform_url,
            control_plane_url=settings.control_plane_url,
            trust_env=settings.trust_env,
            timeout=timeout,
        )
        box = cls(settings, client)
        box._reaper = asyncio.ensure_future(reap_forever(box.control, settings.reap_interval_s))
        box.pool.refill()
        logger.info(
            "unikraft: backend open on %s (library sets: %s, pool %d per shape)",
            settings.platform_url,
            ", ".join(sorted(settings.images)) or "none",
            settings.pool_size,
        )
        return box

    async def preflight(self) -> list[PreflightCheck]:
        """Token set, control plane and metro reachable with it, images present, egress accepted."""
        return await run_preflight(self.control)

    async def library_sets(self) -> set[str]:
        """The library sets this backend runs: one image each, from settings."""
        return set(self.settings.images)

    # --- runs ---------------------------------------------------------------------------------

    async def run(self, request: RunRequest) -> RunResult:
        """Run to completion in a fresh instance and return the result."""
        return await self._execute(request, None)

    def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Yield stdout / stderr chunks as the plugin reports them, then one ``result`` chunk."""

        async def execute(queue: ChunkQueue) -> RunResult:
            return await self._execute(request, queue)

        return stream_chunks(execute)

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxStartError("sandbox is closed")
        if not self.settings.allow_direct_egress:
            raise SandboxUnavailableError(
                "Unikraft Cloud instances reach the internet directly, past the platform's egress "
                "proxy, so runs are refused; fix: set AGENTIC_SANDBOX_UNIKRAFT_ALLOW_DIRECT_EGRESS=true "
                "to accept that (see the README's Unikraft section)"
            )
        if not self.settings.token_value():
            raise SandboxUnavailableError(
                "no Unikraft Cloud token; fix: set AGENTIC_SANDBOX_UNIKRAFT_TOKEN or UKC_TOKEN"
            )

    async def _execute(self, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        self._check_usable()
        job = plan_job(request, self.settings)
        limits = job.limits
        expires = (
            self.control.now()
            + self.settings.boot_timeout_s
            + limits.wall_seconds
            + self.settings.run_grace_s
        )
        instance = await self._acquire(job, expires)
        uuid = instance.uuid or ""
        try:
            outcome = await self._run_inside(uuid, job, sink)
            after: Instance | None = None
            if outcome.lost is not None:
                after = await self._stopped_instance(uuid, outcome.lost)
            if outcome.timed_out:
                await self.control.stop(uuid)
        finally:
            cleanup = asyncio.ensure_future(self.control.delete(uuid))
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup  # the consumer left: the instance still goes
                raise
        return self._result(outcome, after, boot_s=(instance.boot_time_us or 0) / 1e6)

    async def _acquire(self, job: InstanceJob, expires: float) -> Instance:
        """A running instance for ``job``: a pooled one started now, else a new one."""
        memory, vcpus = job.limits.memory_mb, max(1, math.ceil(job.limits.cpus))
        shape = self.pool.shape_for(job.library_set, memory, vcpus)
        pooled = self.pool.take(shape) if shape is not None else None
        if pooled is not None:
            try:
                return await self.control.start(pooled.uuid)
            except NotFoundError:
                logger.info("unikraft: pooled instance %s is gone; creating one", pooled.uuid)
            except BaseException:
                await asyncio.shield(self.control.delete(pooled.uuid))  # it served no run, but it was taken
                raise
        return await self.control.create(
            kind="run", image=job.image, memory_mb=memory, vcpus=vcpus, expires_at=expires
        )

    async def _run_inside(self, uuid: str, job: InstanceJob, sink: ChunkSink | None) -> CommandOutcome:
        """Files in, command started and followed, through the instance's sandbox plugin."""
        sandbox = self.control.sandbox(uuid)
        with self.control.errors(f"preparing instance {uuid}"):
            await sandbox.wait_ready(timeout=self.settings.boot_timeout_s)
            await upload_files(sandbox, job)
            api = await sandbox.api()
            command = await start_command(api, job)
        return await follow_command(api, command, job, sink, time.monotonic())

    async def _stopped_instance(self, uuid: str, lost: UnikraftCloudError) -> Instance:
        """The instance after its plugin stopped answering; an error unless it really stopped."""
        try:
            instance = await self.control.read(uuid)
        except SandboxStartError as exc:
            if isinstance(exc.__cause__, NotFoundError):
                raise SandboxStartError(
                    f"instance {uuid} disappeared during the run (deleted outside this backend?)"
                ) from exc
            raise
        if instance.state not in ("stopped", "stopping", "deleted"):
            raise SandboxStartError(
                f"lost contact with the sandbox plugin of instance {uuid}: {lost}"
            ) from lost
        logger.info("unikraft: instance %s stopped during the run: %s", uuid, describe_stop(instance))
        return instance

    def _result(self, outcome: CommandOutcome, after: Instance | None, *, boot_s: float) -> RunResult:
        if after is not None:
            reason, code = end_reason_of_stop(after), KILLED_EXIT
        elif outcome.timed_out:
            reason, code = EndReason.TIMEOUT, KILLED_EXIT
        else:
            code = outcome.exit_code if outcome.exit_code is not None else KILLED_EXIT
            reason = EndReason.KILLED if code < 0 else EndReason.EXIT
        return RunResult(
            exit_code=code,
            stdout=outcome.stdout.data.decode("utf-8", "replace"),
            stderr=outcome.stderr.data.decode("utf-8", "replace"),
            stdout_truncated=outcome.stdout.truncated,
            stderr_truncated=outcome.stderr.truncated,
            reason=reason,
            duration_s=outcome.duration_s + boot_s,
            boot_s=boot_s,
            backend=self.name,
        )

    # --- hosted apps --------------------------------------------------------------------------

    async def start_service(
        self, request: RunRequest, *, port: int, ttl_s: float | None = None
    ) -> UnikraftServiceHandle:
        """Start ``request`` as an app listening on ``0.0.0.0:$PORT`` behind a service group.

        The instance scales to zero when idle (stateful: the program survives standby) and wakes
        on the next request, if ``app_scale_to_zero``; it is deleted by ``terminate()`` or after
        ``ttl_s`` (default ``app_ttl_s``), by the handle or, if this process is gone, the reaper.
        """
        self._check_usable()
        if not 0 < port < 65536:
            raise SandboxStartError(f"port {port} is not a TCP port")
        request = dataclasses.replace(request, network=True)
        job = plan_job(request, self.settings, extra_env={"PORT": str(port), "HOST": "0.0.0.0"})
        ttl = ttl_s if ttl_s is not None else self.settings.app_ttl_s
        expires = self.control.now() + ttl
        domain = secrets.token_hex(16)  # the app's URL is its capability: 128 random bits
        extra: dict[str, object] = {
            "service_group": {
                "services": [
                    {
                        "port": self.settings.app_public_port,
                        "destination_port": port,
                        "handlers": ["tls", "http"],
                    }
                ],
                "domains": [{"name": domain}],
            }
        }
        if self.settings.app_scale_to_zero:
            extra["scale_to_zero"] = {
                "policy": "on",
                "stateful": True,
                "cooldown_time_ms": self.settings.app_cooldown_ms,
            }
        instance = await self.control.create(
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
            sandbox = self.control.sandbox(uuid)
            with self.control.errors(f"starting app in instance {uuid}"):
                await sandbox.wait_ready(timeout=self.settings.boot_timeout_s)
                await upload_files(sandbox, job)
                command = await start_command(await sandbox.api(), job)
        except BaseException:
            await asyncio.shield(self.control.delete(uuid))
            raise
        handle = UnikraftServiceHandle(
            request.labels.get("app", instance.name or "app"),
            control=self.control,
            instance_uuid=uuid,
            command_uuid=command,
            host=host,
            expires_at=expires,
        )
        handle.start(self._hold(handle, instance))
        return handle

    async def _hold(self, handle: UnikraftServiceHandle, instance: Instance) -> RunResult:
        """Keep the app until its TTL (no polling: standby stays standby); then delete it."""
        try:
            await asyncio.sleep(max(0.0, handle.expires_at - self.control.now()))
        finally:
            cleanup = asyncio.ensure_future(self.control.delete(handle.instance_uuid))
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
            backend=self.name,
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the reaper, delete pooled instances, close the SDK client; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(BaseException):
                await self._reaper
        await self.pool.close()
        await self.control.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _app_host(instance: Instance) -> str:
    """The public domain the platform gave the app's service group."""
    group = instance.service_group
    for domain in (group.domains if group is not None else None) or ():
        if domain.fqdn:
            return domain.fqdn.rstrip(".")
    raise SandboxStartError(f"Unikraft Cloud gave app instance {instance.uuid} no domain")


if TYPE_CHECKING:

    def _is_a_sandbox(box: UnikraftSandbox) -> Sandbox:
        """mypy checks here that the backend fulfils the protocol."""
        return box
