"""Hosted apps on Kubernetes: a Deployment (one hardened replica) and a Service (an Ingress if asked).

The app's files and command travel in a ConfigMap as for a run; the in-pod runner starts it in
service mode (no wall-clock cap) and relays the pod's port :data:`~sandbox.kata.manifests.RELAY_PORT`
to the app on ``127.0.0.1:$PORT``, so an app written for the local backend works unchanged. All
four objects carry the TTL label (``app_ttl_s``): the handle deletes them on ``terminate()`` or
when the TTL passes, and the reaper deletes them if the server died first.

:class:`KataServiceHandle` is a :class:`~sandbox.service.ServiceHandle` without a Unix socket
(``socket_path`` stays None): the app is reached at :attr:`KataServiceHandle.url` (its
``endpoint``, which the server's reverse proxy dials), ``http://<clusterIP>:<port>`` of the
Service as the API answered its creation (:func:`service_url`). Why the ClusterIP and not the
Service's DNS name: the API server allocates it at creation and it never changes for the
Service's life, so the handle can hold it; the server then needs no cluster DNS to reach its apps
and pays no lookup per connection (in a pod, ``ndots:5`` would first try every search domain for
``<name>.<ns>.svc.cluster.local``). A Service without one (headless) falls back to the DNS name.
Readiness is the Deployment's ``readyReplicas`` (a TCP readiness probe on the relay port), then an
HTTP answer at the endpoint: the relay accepts before the app listens, so only an answer through
the Service shows the app itself is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time
from typing import Any

import aiohttp

from sandbox.base import EndReason, RunRequest, RunResult
from sandbox.kata.egress import pod_proxy_url
from sandbox.kata.frames import FrameReader
from sandbox.kata.job import build_job
from sandbox.kata.kube import ApiException, KubeApi
from sandbox.kata.manifests import (
    APP_SERVICE_PORT,
    app_deployment,
    app_ingress,
    app_service,
    run_configmap,
)
from sandbox.kata.naming import dns_label, object_labels, run_name
from sandbox.kata.pod_run import finish_shielded
from sandbox.kata.settings import KataSettings
from sandbox.kata.watch import pod_log_lines
from sandbox.service import ServiceEndpoint, ServiceHandle

__all__ = ["KataServiceHandle", "delete_app_objects", "service_url", "start_app"]

logger = logging.getLogger(__name__)

_POLL_S = 0.5  # readiness polls
_LOG_RETRY_S = 2.0  # how soon the log follower looks for the app's pod again


class KataServiceHandle(ServiceHandle):
    """A hosted app on the cluster: reach it at :attr:`url`; ``terminate()`` deletes its objects."""

    def __init__(
        self,
        name: str,
        *,
        api: KubeApi,
        namespace: str,
        object_name: str,
        url: str,
        path: str | None,
    ) -> None:
        super().__init__(name)
        self.api = api
        self.namespace = namespace
        self.object_name = object_name
        self.url = url  # the Service (see service_url)
        self.endpoint = ServiceEndpoint(url=url)  # what the platform's reverse proxy dials
        self.ingress_path = path  # /apps/{id}/ with a path Ingress; None: host-based or no Ingress

    async def wait_ready(self, timeout_s: float = 20.0) -> bool:
        """Wait for a ready replica, then an HTTP answer through the Service (False: ended / timed out)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running:
            with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError):
                deployment = await self.api.apps.read_namespaced_deployment_status(
                    self.object_name, self.namespace
                )
                status = deployment.status
                if status is not None and (status.ready_replicas or 0) >= 1:
                    return await super().wait_ready(max(deadline - time.monotonic(), 0.0))
            await asyncio.sleep(_POLL_S)
        return False


def service_url(service: Any, name: str, namespace: str) -> str:
    """``http://<clusterIP>:<port>`` of the created ``service`` (a ``V1Service``); its DNS name when headless.

    Why not always the DNS name: see the module docstring. An IPv6 ClusterIP is bracketed.
    """
    spec = getattr(service, "spec", None)
    ports = getattr(spec, "ports", None) or []
    port = getattr(ports[0], "port", None) if ports else None
    port = port or APP_SERVICE_PORT
    cluster_ip = getattr(spec, "cluster_ip", None)
    if cluster_ip and cluster_ip != "None":
        try:
            address = ipaddress.ip_address(cluster_ip)
        except ValueError:
            logger.warning(
                "Service %s/%s has a bad clusterIP %r; using its DNS name", namespace, name, cluster_ip
            )
        else:
            host = f"[{address}]" if address.version == 6 else str(address)
            return f"http://{host}:{port}"
    return f"http://{name}.{namespace}.svc.cluster.local:{port}"


async def delete_app_objects(api: KubeApi, namespace: str, name: str) -> None:
    """Delete an app's Ingress, Service, Deployment (its pods go with it) and ConfigMap."""
    await api.delete(
        f"delete Ingress {namespace}/{name}",
        lambda: api.networking.delete_namespaced_ingress(name, namespace),
    )
    await api.delete(
        f"delete Service {namespace}/{name}", lambda: api.core.delete_namespaced_service(name, namespace)
    )
    await api.delete(
        f"delete Deployment {namespace}/{name}",
        lambda: api.apps.delete_namespaced_deployment(
            name, namespace, propagation_policy="Foreground", grace_period_seconds=0
        ),
    )
    await api.delete(
        f"delete ConfigMap {namespace}/{name}", lambda: api.core.delete_namespaced_config_map(name, namespace)
    )


async def _follow_app_logs(api: KubeApi, namespace: str, name: str, handle: KataServiceHandle) -> None:
    """Keep the newest output of the app's pod in the handle's ring (follows restarts)."""
    while True:
        reader = FrameReader(None, handle, keep=False)
        with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError, ValueError):
            pods = await api.core.list_namespaced_pod(
                namespace, label_selector=f"agentic.dev/app-object={name}"
            )
            running = [p for p in pods.items if p.status is not None and p.status.phase == "Running"]
            if running and running[0].metadata is not None and running[0].metadata.name:
                lines = pod_log_lines(api, namespace, running[0].metadata.name, timeout_s=24 * 3600.0)
                async with contextlib.aclosing(lines):
                    async for line in lines:
                        reader.feed(line)
        reader.finish()
        await asyncio.sleep(_LOG_RETRY_S)


async def start_app(
    api: KubeApi,
    settings: KataSettings,
    request: RunRequest,
    *,
    port: int,
    namespace: str,
    image: str,
    runner: bytes,
) -> KataServiceHandle:
    """Create the app's objects and return its handle (its task deletes them at the end).

    Raises:
        InvalidRunRequestError: bad files, or ``port`` is the relay's.
        SandboxStartError: the API refused an object (nothing is left behind then).
    """
    request = dataclasses.replace(request, network=True)  # it listens; egress still only via the proxy
    app_id = request.labels.get("app") or run_name("app")
    name = dns_label(f"agentic-app-{app_id}", max_len=50)
    job = await build_job(
        request,
        python=settings.python_path,
        max_bytes=settings.configmap_max_bytes,
        egress_proxy_url=pod_proxy_url(settings, request.labels, run=name, life_s=settings.app_ttl_s),
        service_port=port,
    )
    labels = object_labels(request.labels, role="app", ttl_s=settings.app_ttl_s, network=True, run=name)
    path = None if settings.apps_domain or not settings.app_ingress else f"/apps/{app_id}/"
    bodies: list[tuple[str, Any]] = [
        ("ConfigMap", run_configmap(name, namespace, labels, job.configmap_data(runner))),
        ("Deployment", app_deployment(name, namespace, labels, settings, image=image, limits=request.limits)),
        ("Service", app_service(name, namespace, labels)),
    ]
    if settings.app_ingress:  # straight to the Service, past the platform's token check: opt-in
        bodies.append(("Ingress", app_ingress(name, namespace, labels, settings, app_id)))
    creators = {
        "ConfigMap": (api.core.create_namespaced_config_map, api.core.read_namespaced_config_map),
        "Deployment": (api.apps.create_namespaced_deployment, api.apps.read_namespaced_deployment),
        "Service": (api.core.create_namespaced_service, api.core.read_namespaced_service),
        "Ingress": (api.networking.create_namespaced_ingress, api.networking.read_namespaced_ingress),
    }
    created: dict[str, Any] = {}
    try:
        for kind, body in bodies:
            create, read = creators[kind]
            created[kind] = await api.create(
                f"create {kind} {namespace}/{name}",
                lambda create=create, body=body: create(namespace, body),  # type: ignore[misc]
                lambda read=read: read(name, namespace),  # type: ignore[misc]
            )
    except BaseException:
        await finish_shielded(delete_app_objects(api, namespace, name))
        raise
    url = service_url(created["Service"], name, namespace)
    handle = KataServiceHandle(app_id, api=api, namespace=namespace, object_name=name, url=url, path=path)
    started = time.monotonic()

    async def lifetime() -> RunResult:
        follower = asyncio.create_task(_follow_app_logs(api, namespace, name, handle))
        try:
            await asyncio.sleep(settings.app_ttl_s)
            logger.info("app %s reached its TTL (%d s); deleting it", app_id, settings.app_ttl_s)
            return RunResult(
                exit_code=-9,
                stdout="",
                stderr="",
                reason=EndReason.TIMEOUT,
                duration_s=round(time.monotonic() - started, 3),
                backend="kata",
            )
        finally:
            follower.cancel()
            with contextlib.suppress(BaseException):
                await follower

    handle.start(lifetime())
    # Deleted on the way out, also when terminate() comes before lifetime() ever ran: the objects
    # exist from here on, whatever the task did.
    handle.on_exit(lambda: delete_app_objects(api, namespace, name))
    return handle
