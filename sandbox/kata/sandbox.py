"""The ``kata`` backend: each run is a Kubernetes pod in a Kata Containers VM.

Lifecycle: :meth:`KataSandbox.open` loads the cluster configuration and starts the reaper (all
I/O happens there and in the methods; the constructor does none); :meth:`~KataSandbox.close`
stops the reaper and closes the connection pool (idempotent; pods of runs still going are deleted
by those runs). A run (see :mod:`sandbox.kata.pod_run`) is a ConfigMap + Pod in the tenant's
namespace (a file set larger than ``configmap_max_bytes`` skips the ConfigMap and goes in over
``exec`` once the pod runs), or, with ``use_agent_sandbox``, a ``SandboxClaim`` on a warm pool
(:mod:`sandbox.kata.warm_pool`). Hosted apps are a Deployment + Service + Ingress
(:mod:`sandbox.kata.apps`); a browser session is a pod that Playwright reaches over CDP
(:mod:`sandbox.kata.browser`).

Isolation comes from the cluster: the Kata runtime class (a VM per pod), the pod hardening in
:mod:`sandbox.kata.manifests`, and the NetworkPolicies of ``infra/`` (no egress except the
platform's egress proxy for pods labelled ``agentic.dev/network=egress``, no API server access).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from sandbox.base import Limits, OutputChunk, RunRequest, RunResult
from sandbox.config import DEFAULT_MAX_LIMITS
from sandbox.errors import SandboxStartError, UnknownLibrarySetError
from sandbox.kata.apps import KataServiceHandle, start_app
from sandbox.kata.browser import KataBrowserHandle, start_browser
from sandbox.kata.egress import pod_proxy_url, resolve_egress_proxy
from sandbox.kata.exec import PodExec
from sandbox.kata.job import build_job, runner_source
from sandbox.kata.kube import KubeApi
from sandbox.kata.naming import namespace_for, object_labels, run_name
from sandbox.kata.pod_run import PodTarget, run_pod_once
from sandbox.kata.preflight import PreflightCheck, run_preflight
from sandbox.kata.reaper import reap_expired
from sandbox.kata.settings import KataSettings
from sandbox.kata.warm_pool import WarmPools, fits_pool
from sandbox.resources import check_limits
from sandbox.streaming import ChunkSink, stream_chunks

__all__ = ["KataSandbox"]

logger = logging.getLogger(__name__)


class KataSandbox:
    """Run untrusted code in Kata pods on Kubernetes. See :mod:`sandbox.base` for the contract."""

    name = "kata"
    browser_over_cdp = True  # runs Chromium itself, reached over CDP (see sandbox.browser)

    def __init__(
        self, settings: KataSettings, api: KubeApi, *, runner: bytes, maximums: Limits = DEFAULT_MAX_LIMITS
    ) -> None:
        """Use :meth:`open`; this only stores its arguments (no I/O).

        ``runner``: the in-pod runner's source (:func:`sandbox.kata.job.runner_source`).
        """
        self.settings = settings
        self.api = api
        self.maximums = maximums
        self.namespaces: set[str] = set()  # namespaces this process has used (the reaper's fallback)
        self.pod_exec = PodExec(api)
        self.pools = WarmPools(api, settings, self.pod_exec)
        self._runner = runner
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: KataSettings, *, maximums: Limits | None = None) -> KataSandbox:
        """Connect to the cluster (kubeconfig or in-cluster) and start the background reaper.

        ``maximums``: the operator's limit maximums (default: the platform's defaults); each run is
        checked against them here too, not only by the guard in front.

        Raises:
            SandboxUnavailableError: no usable cluster configuration.
        """
        runner = await asyncio.to_thread(runner_source)
        settings = await resolve_egress_proxy(settings)
        api = await KubeApi.connect(settings)
        box = cls(settings, api, runner=runner, maximums=maximums or DEFAULT_MAX_LIMITS)
        if settings.reap_interval_s > 0:
            box._reaper = asyncio.create_task(box._reap_forever(), name="kata-reaper")
        return box

    async def preflight(self) -> list[PreflightCheck]:
        """Check the API, the namespace, the RuntimeClass and our permissions (each with a fix hint)."""
        return await run_preflight(self.api, self.settings)

    async def library_sets(self) -> set[str]:
        """The library sets this backend can run: one image each (``AGENTIC_SANDBOX_KATA_IMAGES``)."""
        return set(self.settings.images)

    def _image(self, library_set: str) -> str:
        try:
            return self.settings.images[library_set]
        except KeyError:
            known = ", ".join(sorted(self.settings.images)) or "none configured"
            raise UnknownLibrarySetError(
                f"unknown library set {library_set!r} for the kata backend (sets: {known})"
            ) from None

    def _check(self, request: RunRequest) -> None:
        if self._closed:
            raise SandboxStartError("sandbox is closed")
        check_limits(request.limits, self.maximums)
        if request.pipe_fds:
            raise SandboxStartError("the kata backend cannot pass host pipes (the browser runs on local)")
        if request.network and not self.settings.egress_proxy_url:
            raise SandboxStartError(
                "runs with network need the egress proxy's in-cluster URL; fix: set "
                "AGENTIC_SANDBOX_KATA_EGRESS_PROXY_URL"
            )

    async def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` to completion (never raises for program failures)."""
        return await self._execute(request, None)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Yield stdout / stderr chunks as the pod's log brings them, then one ``result`` chunk."""
        async with contextlib.aclosing(stream_chunks(lambda q: self._execute(request, q))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _execute(self, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        self._check(request)
        image = self._image(request.library_set)
        name = run_name()
        proxy_url = pod_proxy_url(self.settings, request.labels, run=name, life_s=request.limits.wall_seconds)
        job = await build_job(
            request,
            python=self.settings.python_path,
            max_bytes=request.limits.disk_mb * 1024 * 1024,
            egress_proxy_url=proxy_url,
            bound_by=f"the run's {request.limits.disk_mb} MB scratch dir",
        )
        namespace = namespace_for(self.settings.namespace, request.labels.get("tenant", "default"))
        self.namespaces.add(namespace)
        labels = object_labels(
            request.labels, role="run", ttl_s=self.settings.pod_ttl_s, network=request.network, run=name
        )
        target = PodTarget(namespace=namespace, name=name, labels=labels, image=image)
        if self.settings.use_agent_sandbox and fits_pool(request, self.settings):
            return await self.pools.run_claimed(
                target, request, job, self._runner, sink, library_set=request.library_set, backend=self.name
            )
        large = job.size > self.settings.configmap_max_bytes  # too big for a ConfigMap: exec + tar
        return await run_pod_once(
            self.api,
            self.settings,
            target,
            request,
            job,
            self._runner,
            sink,
            backend=self.name,
            uploader=self.pod_exec if large else None,
        )

    async def start_service(self, request: RunRequest, *, port: int) -> KataServiceHandle:
        """Start ``request`` as a hosted app: Deployment + Service + Ingress, reached by the Service's URL."""
        self._check(request)
        image = self._image(request.library_set)
        namespace = namespace_for(self.settings.namespace, request.labels.get("tenant", "default"))
        self.namespaces.add(namespace)
        return await start_app(
            self.api, self.settings, request, port=port, namespace=namespace, image=image, runner=self._runner
        )

    async def start_browser(self, request: RunRequest) -> KataBrowserHandle:
        """Start a browser session as a pod; its handle's ``endpoint.url`` is the DevTools endpoint."""
        if self._closed:
            raise SandboxStartError("sandbox is closed")
        check_limits(request.limits, self.maximums)
        namespace = namespace_for(self.settings.namespace, request.labels.get("tenant", "default"))
        self.namespaces.add(namespace)
        return await start_browser(self.api, self.settings, request, namespace=namespace, runner=self._runner)

    async def reap(self) -> int:
        """Delete this platform's objects whose expiry label has passed; return how many."""
        return await reap_expired(self.api, self.settings, self.namespaces)

    async def _reap_forever(self) -> None:
        while True:
            try:
                removed = await self.reap()
                if removed:
                    logger.info("kata reaper removed %d expired objects", removed)
            except Exception as exc:  # the reaper must outlive a bad round
                logger.warning("kata reaper round failed: %s", exc)
            await asyncio.sleep(self.settings.reap_interval_s)

    async def close(self) -> None:
        """Stop the reaper and close the API client; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.pod_exec.close()
        await self.api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
