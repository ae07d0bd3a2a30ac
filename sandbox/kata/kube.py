"""Access to the Kubernetes API through the official client's asyncio flavour (``kubernetes.aio``).

Why ``kubernetes.aio``: it is the official client (same package, same models) and every call is a
coroutine, so nothing blocks the event loop and no thread is needed.

:class:`KubeApi` bundles the API groups the backend uses, counts the HTTP requests it makes (for
``bench/kata_control_plane.py``), retries what is safe to retry (reads and deletes on 429 / 5xx /
a dropped connection; a create whose answer was lost is found by name), and turns API errors into
:class:`~sandbox.errors.SandboxStartError` with the server's own message and a fix hint.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.config.config_exception import ConfigException

from sandbox.errors import SandboxStartError, SandboxUnavailableError
from sandbox.kata.settings import KataSettings

__all__ = ["ApiException", "KubeApi", "api_error", "is_missing", "status_message"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_RETRIES = 3
_RETRY_BASE_S = 0.2
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_HINTS = {
    401: "the API server refused our credentials; check the kubeconfig or service account token",
    403: "our service account lacks a permission, or a quota / admission policy refused the object "
    "(see the RBAC and ResourceQuota in infra/)",
    404: "the namespace or resource type does not exist (is the namespace created? are the CRDs installed?)",
    409: "an object with that name already exists",
    422: "the API server refused the object as invalid",
}


def status_message(exc: ApiException) -> str:
    """The ``message`` of the API's Status body, else its reason."""
    body = exc.body
    if body:
        try:
            data = json.loads(body)
        except (ValueError, TypeError):
            return str(body)[:500]
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])[:500]
    return str(exc.reason or "no message")


def api_error(action: str, exc: ApiException | aiohttp.ClientError | TimeoutError) -> SandboxStartError:
    """A start error saying what we tried, what the API answered, and what to check."""
    if isinstance(exc, ApiException):
        hint = _HINTS.get(int(exc.status or 0), "the API server failed; retry later")
        return SandboxStartError(
            f"kubernetes API refused to {action}: {exc.status} {status_message(exc)} ({hint})"
        )
    return SandboxStartError(f"kubernetes API unreachable while trying to {action}: {exc!r}")


def is_missing(exc: BaseException) -> bool:
    """True for a 404 (the object is already gone)."""
    return isinstance(exc, ApiException) and exc.status == 404


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return int(exc.status or 0) in _TRANSIENT
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError)


class KubeApi:
    """The API groups we use over one connection pool, with a request counter."""

    def __init__(self, api_client: k8s.ApiClient, configuration: k8s.Configuration) -> None:
        self.api_client = api_client
        self.configuration = configuration
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.networking = k8s.NetworkingV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.node = k8s.NodeV1Api(api_client)
        self.authorization = k8s.AuthorizationV1Api(api_client)
        self.extensions = k8s.ApiextensionsV1Api(api_client)
        self.requests = 0  # HTTP requests sent (watches, log streams and execs count once)

    @classmethod
    async def connect(cls, settings: KataSettings) -> KubeApi:
        """Load the kubeconfig (or the in-cluster service account) and open a client.

        Raises:
            SandboxUnavailableError: no usable configuration (the message says which one was tried).
        """
        configuration = k8s.Configuration()
        try:
            if settings.in_cluster:
                await asyncio.to_thread(k8s_config.load_incluster_config, client_configuration=configuration)
            else:
                await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
                    context=settings.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            where = "the in-cluster service account" if settings.in_cluster else "the kubeconfig"
            raise SandboxUnavailableError(
                f"cannot load {where}: {exc}; fix: set AGENTIC_SANDBOX_KATA_KUBECONFIG (or KUBECONFIG), "
                "or AGENTIC_SANDBOX_KATA_IN_CLUSTER=true inside the cluster"
            ) from exc
        api: KubeApi
        tracing = aiohttp.TraceConfig()

        async def count(*_: object) -> None:
            api.requests += 1

        tracing.on_request_start.append(count)
        configuration.trace_configs = [tracing]
        api = cls(k8s.ApiClient(configuration), configuration)
        return api

    def to_json(self, obj: Any) -> dict[str, Any]:
        """A client model as the API's JSON dict (camelCase keys)."""
        data = self.api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return data if isinstance(data, dict) else {}

    async def close(self) -> None:
        """Close the connection pool."""
        await self.api_client.close()  # type: ignore[no-untyped-call]

    async def call(self, action: str, fn: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """``await fn()``, retried on transient failures when ``retry``; API errors become start errors.

        A 404 is re-raised as is (callers decide whether "gone" is fine).
        """
        for attempt in range(_RETRIES if retry else 1):
            try:
                return await fn()
            except (TimeoutError, ApiException, aiohttp.ClientError) as exc:
                if is_missing(exc):
                    raise
                if not (retry and _transient(exc)) or attempt == _RETRIES - 1:
                    raise api_error(action, exc) from exc
                logger.info("kubernetes API: %s failed (%r); retrying", action, exc)
                await asyncio.sleep(_RETRY_BASE_S * 2**attempt)
        raise AssertionError("unreachable")

    async def create(
        self, action: str, create: Callable[[], Awaitable[T]], read: Callable[[], Awaitable[T]]
    ) -> T:
        """Create an object; when a transient failure hides whether it was made, look it up by name.

        Raises:
            SandboxStartError: refused (403, 409 on the first try, 422...) or the API stays down.
        """
        for attempt in range(_RETRIES):
            try:
                return await create()
            except (TimeoutError, ApiException, aiohttp.ClientError) as exc:
                if isinstance(exc, ApiException) and exc.status == 409 and attempt > 0:
                    return await self.call(f"read back after {action}", read)  # our lost first try
                if not _transient(exc) or attempt == _RETRIES - 1:
                    raise api_error(action, exc) from exc
                logger.info("kubernetes API: %s failed (%r); retrying", action, exc)
                await asyncio.sleep(_RETRY_BASE_S * 2**attempt)
        raise AssertionError("unreachable")

    async def delete(self, action: str, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Delete (retried); True when deleted or already gone, False when it stayed (logged)."""
        try:
            await self.call(action, fn)
        except ApiException as exc:
            if is_missing(exc):
                return True
            raise
        except SandboxStartError as exc:
            logger.warning("could not %s: %s (the reaper will retry)", action, exc)
            return False
        return True
