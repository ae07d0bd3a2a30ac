"""The ``unikraft`` backend: the :class:`~sandbox.base.Sandbox` protocol on Unikraft Cloud unikernels.

A run gets an instance of its own (or one from the pool of stopped instances), made from the
library set's image with the sandbox plugin attached; the plugin writes the files and runs the
command; the instance is deleted after the run, whatever happened. The pieces (its plumbing,
:mod:`sandbox.unikraft`, as :mod:`sandbox.host` is the local backends'):

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
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx
from unikraft_cloud import Instance, NotFoundError, UnikraftCloud, UnikraftCloudError

from sandbox.base import Check, EndReason, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import SandboxSettings, UnikraftSettings
from sandbox.errors import SandboxStartError, SandboxUnavailableError
from sandbox.libsets import LIBRARY_SETS
from sandbox.streaming import ChunkQueue, ChunkSink, stream_chunks
from sandbox.unikraft.execution import CommandOutcome, follow_command, start_command, upload_files
from sandbox.unikraft.instances import InstanceControl, describe_stop, end_reason_of_stop
from sandbox.unikraft.pool import InstancePool
from sandbox.unikraft.preflight import run_preflight
from sandbox.unikraft.reaper import reap_forever
from sandbox.unikraft.request import InstanceJob, plan_job
from sandbox.unikraft.service import UnikraftServiceHandle, start_app

__all__ = ["UnikraftSandbox"]

logger = logging.getLogger(__name__)

KILLED_EXIT = -9


class UnikraftSandbox:
    """Runs each request in a Unikraft Cloud instance of its own; see the module docstring."""

    name = "unikraft"

    control: InstanceControl  # made by open(): the SDK client and what it calls
    pool: InstancePool

    def __init__(
        self, settings: SandboxSettings | None = None, *, client: UnikraftCloud | None = None
    ) -> None:
        """Keep the settings; no I/O here (``open`` builds the SDK client, the reaper, the pool).

        ``client``: an SDK client to use instead of one built from the settings.
        """
        self.settings = settings or SandboxSettings()
        self.ukc: UnikraftSettings = self.settings.unikraft
        self._client = client
        self._reaper: asyncio.Task[None] | None = None
        self._open_lock = asyncio.Lock()
        self._opened = False
        self._closed = False

    async def open(self) -> Self:
        """Build the SDK client for the configured metro (in a thread), start the reaper, fill the pool.

        Nothing here fails on an unreachable API or a missing token: :meth:`preflight` tells, runs raise.
        """
        async with self._open_lock:
            if self._closed:
                raise SandboxStartError("sandbox is closed")
            if self._opened:
                return self
            client = await self._client_for_use()
            self.control = InstanceControl(client, self.ukc)
            self.pool = InstancePool(self.control)
            self._reaper = asyncio.ensure_future(reap_forever(self.control, self.ukc.reap_interval_s))
            self.pool.refill()
            self._opened = True
            logger.info(
                "unikraft: backend open on %s (library sets: %s, pool %d per shape)",
                self.ukc.platform_url,
                ", ".join(sorted(self.ukc.images)) or "none",
                self.ukc.pool_size,
            )
        return self

    async def _client_for_use(self) -> UnikraftCloud:
        """The given client, or a new one for the settings (built in a thread: it loads CA certificates)."""
        if self._client is not None:
            return self._client
        return await asyncio.to_thread(_make_client, self.ukc)

    async def preflight(self) -> list[Check]:
        """Token set, control plane and metro reachable with it, images present, egress accepted.

        Works unopened too (``agentic doctor``, ``/healthz``): then with a client of its own, closed after.
        """
        if self._opened:
            return await run_preflight(self.control)
        client = await self._client_for_use()
        try:
            return await run_preflight(InstanceControl(client, self.ukc))
        finally:
            if self._client is None:
                await client.aclose()

    async def library_sets(self) -> Mapping[str, str | None]:
        """Every known set -> None when settings give it an image (one image per set), else the fix."""
        fix = "add its image to AGENTIC_SANDBOX_UNIKRAFT_IMAGES"
        return {
            name: None
            if name in self.ukc.images
            else f"library set {name!r} has no Unikraft image; fix: {fix}"
            for name in sorted({*LIBRARY_SETS, *self.ukc.images})
        }

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
        if not self._opened:
            raise SandboxStartError("the unikraft sandbox is not open; await open() (or `async with`) first")
        if not self.ukc.allow_direct_egress:
            raise SandboxUnavailableError(
                "Unikraft Cloud instances reach the internet directly, past the platform's egress "
                "proxy, so runs are refused; fix: set AGENTIC_SANDBOX_UNIKRAFT_ALLOW_DIRECT_EGRESS=true "
                "to accept that (see the README's Unikraft section)"
            )
        if not self.ukc.token_value():
            raise SandboxUnavailableError(
                "no Unikraft Cloud token; fix: set AGENTIC_SANDBOX_UNIKRAFT_TOKEN or UKC_TOKEN"
            )

    async def _execute(self, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        self._check_usable()
        job = plan_job(request, self.ukc, maximums=self.settings.max_limits)
        limits = job.limits
        expires = self.control.now() + self.ukc.boot_timeout_s + limits.wall_seconds + self.ukc.run_grace_s
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
            await sandbox.wait_ready(timeout=self.ukc.boot_timeout_s)
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
        job = plan_job(
            request,
            self.ukc,
            maximums=self.settings.max_limits,
            extra_env={"PORT": str(port), "HOST": "0.0.0.0"},
        )
        return await start_app(self.control, job, name=request.labels.get("app"), port=port, ttl_s=ttl_s)

    # --- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the reaper, delete pooled instances, close the SDK client; idempotent."""
        async with self._open_lock:
            if self._closed:
                return
            self._closed = True
        if not self._opened:
            return
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(BaseException):
                await self._reaper
        await self.pool.close()
        await self.control.client.aclose()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _make_client(settings: UnikraftSettings) -> UnikraftCloud:
    """The SDK client for the configured metro (blocking: its TLS context loads the CA certificates)."""
    # Connect and each plain request are bounded; the SDK stretches the read for its waits.
    timeout = httpx.Timeout(settings.request_timeout_s, connect=min(10.0, settings.request_timeout_s))
    return UnikraftCloud(
        token=settings.token_value() or "",
        base_url=settings.platform_url,
        control_plane_url=settings.control_plane_url,
        trust_env=settings.trust_env,
        timeout=timeout,
    )


if TYPE_CHECKING:

    def _is_a_sandbox(box: UnikraftSandbox) -> Sandbox:
        """mypy checks here that the backend fulfils the protocol."""
        return box
