"""Can this cluster run our pods? Each check says what it found and how to fix it.

For ``agentic doctor`` and ``/healthz``: the API answers, the namespace exists, the RuntimeClass
exists, our service account may do what a run and an app need (``SelfSubjectAccessReview``), every
library set has an image (pinned by digest), and with ``use_agent_sandbox`` the agent-sandbox CRDs
are installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from kubernetes.aio.client import VersionApi

from sandbox.kata.kube import ApiException, KubeApi, status_message
from sandbox.kata.manifests import AGENT_SANDBOX_GROUP
from sandbox.kata.naming import namespace_for
from sandbox.kata.settings import KataSettings

__all__ = ["PERMISSIONS", "PreflightCheck", "run_preflight"]

_Errors = (ApiException, aiohttp.ClientError, TimeoutError)

# (verb, group, resource, subresource) a run or an app needs in the sandbox namespace.
PERMISSIONS: tuple[tuple[str, str, str, str], ...] = (
    *((verb, "", "pods", "") for verb in ("create", "get", "list", "watch", "delete")),
    ("get", "", "pods", "log"),
    *((verb, "", "configmaps", "") for verb in ("create", "delete")),
    *((verb, "", "services", "") for verb in ("create", "delete")),
    *((verb, "apps", "deployments", "") for verb in ("create", "get", "delete")),
    *((verb, "networking.k8s.io", "ingresses", "") for verb in ("create", "delete")),
)
_AGENT_SANDBOX_PERMISSIONS: tuple[tuple[str, str, str, str], ...] = (
    *((verb, AGENT_SANDBOX_GROUP, "sandboxclaims", "") for verb in ("create", "get", "delete")),
    *((verb, AGENT_SANDBOX_GROUP, "sandboxtemplates", "") for verb in ("create", "get")),
    *((verb, AGENT_SANDBOX_GROUP, "sandboxwarmpools", "") for verb in ("create", "get")),
    ("create", "", "pods", "exec"),
)
_CRDS = (
    "sandboxes.agents.x-k8s.io",
    *(f"{p}.{AGENT_SANDBOX_GROUP}" for p in ("sandboxclaims", "sandboxtemplates", "sandboxwarmpools")),
)


@dataclass(frozen=True, kw_only=True)
class PreflightCheck:
    """One check: ``ok``, what was found (``detail``), and how to fix it when not ok."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _failed(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {status_message(exc)}"
    return repr(exc)


async def _check_api(api: KubeApi) -> PreflightCheck:
    try:
        version = await VersionApi(api.api_client).get_code()
        return PreflightCheck(name="kata.api", ok=True, detail=f"API server {version.git_version} answers")
    except _Errors as exc:
        return PreflightCheck(
            name="kata.api",
            ok=False,
            detail=f"API server unreachable: {_failed(exc)}",
            fix="check AGENTIC_SANDBOX_KATA_KUBECONFIG / the in-cluster service account and the network path",
        )


async def _check_namespace(api: KubeApi, settings: KataSettings) -> PreflightCheck:
    namespace = namespace_for(settings.namespace, "default")
    what = f"namespace {namespace}" + (
        " (tenant 'default' of the per-tenant template)" if "{tenant}" in settings.namespace else ""
    )
    try:
        await api.core.read_namespace(namespace)
        return PreflightCheck(name="kata.namespace", ok=True, detail=f"{what} exists")
    except _Errors as exc:
        return PreflightCheck(
            name="kata.namespace",
            ok=False,
            detail=f"{what}: {_failed(exc)}",
            fix="apply infra/ (it creates the user namespaces) or set AGENTIC_SANDBOX_KATA_NAMESPACE",
        )


async def _check_runtime_class(api: KubeApi, settings: KataSettings) -> PreflightCheck:
    name = settings.runtime_class
    try:
        runtime = await api.node.read_runtime_class(name)
        return PreflightCheck(
            name="kata.runtime_class", ok=True, detail=f"RuntimeClass {name} (handler {runtime.handler})"
        )
    except _Errors as exc:
        return PreflightCheck(
            name="kata.runtime_class",
            ok=False,
            detail=f"RuntimeClass {name}: {_failed(exc)}",
            fix="install Kata Containers (kata-deploy creates kata-qemu, kata-clh, kata-fc) or set "
            "AGENTIC_SANDBOX_KATA_RUNTIME_CLASS",
        )


async def _check_permissions(api: KubeApi, settings: KataSettings) -> PreflightCheck:
    namespace = namespace_for(settings.namespace, "default")
    wanted = PERMISSIONS + (_AGENT_SANDBOX_PERMISSIONS if settings.use_agent_sandbox else ())
    denied: list[str] = []
    try:
        for verb, group, resource, sub in wanted:
            review = await api.authorization.create_self_subject_access_review(
                {  # type: ignore[arg-type]
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": {
                        "resourceAttributes": {
                            "namespace": namespace,
                            "verb": verb,
                            "group": group,
                            "resource": resource,
                            "subresource": sub,
                        }
                    },
                }
            )
            if review.status is None or not review.status.allowed:
                denied.append(
                    f"{verb} {resource}{'/' + sub if sub else ''}{' (' + group + ')' if group else ''}"
                )
    except _Errors as exc:
        return PreflightCheck(
            name="kata.permissions",
            ok=False,
            detail=f"cannot ask the API what we may do: {_failed(exc)}",
            fix="grant create on selfsubjectaccessreviews (every authenticated user has it by default)",
        )
    if denied:
        return PreflightCheck(
            name="kata.permissions",
            ok=False,
            detail=f"in {namespace} we may not: {', '.join(denied)}",
            fix="apply the server's Role / RoleBinding from infra/ to this namespace",
        )
    return PreflightCheck(
        name="kata.permissions", ok=True, detail=f"all {len(wanted)} permissions granted in {namespace}"
    )


def _check_images(settings: KataSettings) -> PreflightCheck:
    if not settings.images:
        return PreflightCheck(
            name="kata.images",
            ok=False,
            detail="no library-set images configured",
            fix='set AGENTIC_SANDBOX_KATA_IMAGES=\'{"base": "registry/agentic-sandbox-base@sha256:..."}\'',
        )
    loose = sorted(name for name, image in settings.images.items() if "@sha256:" not in image)
    detail = f"library sets: {', '.join(sorted(settings.images))}"
    if loose:
        detail += f"; not pinned by digest: {', '.join(loose)} (a moved tag changes what runs)"
    return PreflightCheck(
        name="kata.images", ok=True, detail=detail, fix="pin each image as name@sha256:..." if loose else ""
    )


async def _check_crds(api: KubeApi) -> PreflightCheck:
    missing = []
    for crd in _CRDS:
        try:
            await api.extensions.read_custom_resource_definition(crd)
        except _Errors as exc:
            missing.append(f"{crd} ({_failed(exc)})")
    if missing:
        return PreflightCheck(
            name="kata.agent_sandbox",
            ok=False,
            detail=f"agent-sandbox CRDs missing: {'; '.join(missing)}",
            fix="install kubernetes-sigs/agent-sandbox with its extensions, or set "
            "AGENTIC_SANDBOX_KATA_USE_AGENT_SANDBOX=false",
        )
    return PreflightCheck(name="kata.agent_sandbox", ok=True, detail="agent-sandbox CRDs installed")


async def run_preflight(api: KubeApi, settings: KataSettings) -> list[PreflightCheck]:
    """Every check, in order; a failed API check stops the ones that need the API."""
    first = await _check_api(api)
    checks = [first]
    if first.ok:
        checks += [
            await _check_namespace(api, settings),
            await _check_runtime_class(api, settings),
            await _check_permissions(api, settings),
        ]
        if settings.use_agent_sandbox:
            checks.append(await _check_crds(api))
    checks.append(_check_images(settings))
    return checks
