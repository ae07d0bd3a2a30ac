"""Delete what runs and apps left behind: objects of ours whose expiry label has passed.

Runs delete their own objects; this catches the rest (a server that died mid-run, a delete the API
refused). Objects are found by label only (:data:`~sandbox.kata.naming.MANAGED_SELECTOR`, expiry in
:data:`~sandbox.kata.naming.TTL_LABEL`), first across all namespaces; when our service account may
not list cluster-wide (least-privilege RBAC grants it per namespace), namespace by namespace over
the configured namespace and those this process has used. Warm-pool templates and pools carry no
expiry and are never reaped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from sandbox.errors import SandboxStartError
from sandbox.kata.kube import ApiException, KubeApi
from sandbox.kata.manifests import AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION
from sandbox.kata.naming import MANAGED_SELECTOR, TTL_LABEL
from sandbox.kata.settings import KataSettings

__all__ = ["expired", "reap_expired"]

logger = logging.getLogger(__name__)

Json = dict[str, Any]
Lister = Callable[[str | None], Awaitable[Any]]  # namespace (None: all) -> list response
Deleter = Callable[[str, str], Awaitable[Any]]  # (name, namespace)


def expired(labels: dict[str, str] | None, now: float) -> bool:
    """True when the object's expiry label is in the past (objects without one never expire)."""
    value = (labels or {}).get(TTL_LABEL, "")
    return value.isdigit() and int(value) < now


def _kinds(api: KubeApi, settings: KataSettings) -> list[tuple[str, Lister, Deleter]]:
    sel = MANAGED_SELECTOR
    core, apps, net = api.core, api.apps, api.networking
    kinds: list[tuple[str, Lister, Deleter]] = [
        (
            "Pod",
            lambda ns: (
                core.list_namespaced_pod(ns, label_selector=sel)
                if ns
                else core.list_pod_for_all_namespaces(label_selector=sel)
            ),
            lambda n, ns: core.delete_namespaced_pod(n, ns, grace_period_seconds=0),
        ),
        (
            "ConfigMap",
            lambda ns: (
                core.list_namespaced_config_map(ns, label_selector=sel)
                if ns
                else core.list_config_map_for_all_namespaces(label_selector=sel)
            ),
            lambda n, ns: core.delete_namespaced_config_map(n, ns),
        ),
        (
            "Service",
            lambda ns: (
                core.list_namespaced_service(ns, label_selector=sel)
                if ns
                else core.list_service_for_all_namespaces(label_selector=sel)
            ),
            lambda n, ns: core.delete_namespaced_service(n, ns),
        ),
        (
            "Deployment",
            lambda ns: (
                apps.list_namespaced_deployment(ns, label_selector=sel)
                if ns
                else apps.list_deployment_for_all_namespaces(label_selector=sel)
            ),
            lambda n, ns: apps.delete_namespaced_deployment(n, ns, propagation_policy="Foreground"),
        ),
        (
            "Ingress",
            lambda ns: (
                net.list_namespaced_ingress(ns, label_selector=sel)
                if ns
                else net.list_ingress_for_all_namespaces(label_selector=sel)
            ),
            lambda n, ns: net.delete_namespaced_ingress(n, ns),
        ),
    ]
    if settings.use_agent_sandbox:
        group, version = AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION
        kinds.append(
            (
                "SandboxClaim",
                lambda ns: (
                    api.custom.list_namespaced_custom_object(
                        group, version, ns, "sandboxclaims", label_selector=sel
                    )
                    if ns
                    else api.custom.list_cluster_custom_object(
                        group, version, "sandboxclaims", label_selector=sel
                    )
                ),
                lambda n, ns: api.custom.delete_namespaced_custom_object(
                    group, version, ns, "sandboxclaims", n
                ),
            )
        )
    return kinds


def _items(response: Any, api: KubeApi) -> list[Json]:
    data = response if isinstance(response, dict) else api.to_json(response)
    return list(data.get("items") or []) if isinstance(data, dict) else []


def _bind_list(lister: Lister, namespace: str) -> Callable[[], Awaitable[Any]]:
    return lambda: lister(namespace)


def _bind_delete(deleter: Deleter, name: str, namespace: str) -> Callable[[], Awaitable[Any]]:
    return lambda: deleter(name, namespace)


async def _list(api: KubeApi, kind: str, lister: Lister, namespaces: Iterable[str]) -> list[Json]:
    """Every object of ``kind`` of ours: cluster-wide, else per namespace."""
    try:
        return _items(await api.call(f"list {kind}s of the platform", lambda: lister(None)), api)
    except (SandboxStartError, ApiException) as exc:
        logger.debug("cluster-wide list of %s refused (%s); listing per namespace", kind, exc)
    found: list[Json] = []
    for namespace in sorted(set(namespaces)):
        try:
            found += _items(
                await api.call(f"list {kind}s in {namespace}", _bind_list(lister, namespace)), api
            )
        except (SandboxStartError, ApiException, aiohttp.ClientError) as exc:
            logger.info("reaper cannot list %s in %s: %s", kind, namespace, exc)
    return found


async def reap_expired(api: KubeApi, settings: KataSettings, used_namespaces: Iterable[str] = ()) -> int:
    """Delete expired objects of ours; return how many were deleted."""
    namespaces = set(used_namespaces)
    if "{tenant}" not in settings.namespace:
        namespaces.add(settings.namespace)
    now = time.time()
    removed = 0
    for kind, lister, deleter in _kinds(api, settings):
        for item in await _list(api, kind, lister, namespaces):
            meta = item.get("metadata") or {}
            if not expired(meta.get("labels"), now) or meta.get("deletionTimestamp"):
                continue
            name, namespace = str(meta.get("name")), str(meta.get("namespace"))
            if await api.delete(f"reap {kind} {namespace}/{name}", _bind_delete(deleter, name, namespace)):
                removed += 1
                logger.info("reaped expired %s %s/%s", kind, namespace, name)
    return removed
