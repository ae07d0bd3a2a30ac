"""Settings of the Kata backend (env prefix ``AGENTIC_SANDBOX_KATA_``).

Only this module reads the environment for the backend; :class:`~sandbox.kata.sandbox.KataSandbox`
receives a :class:`KataSettings`. Maps and lists are given as JSON, e.g.
``AGENTIC_SANDBOX_KATA_IMAGES='{"base": "registry.example/agentic-base@sha256:..."}'``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.egress_identity import IdentitySecret

__all__ = ["DEFAULT_EGRESS_PROXY_URL", "RUNTIME_CLASSES", "KataSettings", "RuntimeClassName"]

RuntimeClassName = Literal["kata-qemu", "kata-clh", "kata-fc"]
RUNTIME_CLASSES: tuple[RuntimeClassName, ...] = ("kata-qemu", "kata-clh", "kata-fc")

DEFAULT_EGRESS_PROXY_URL = "http://agentic-egress-proxy.agentic-system.svc.cluster.local:3128"
"""The Service of ``infra/base/egress-proxy/`` (tests/infra checks the two agree)."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class KataSettings(BaseSettings):
    """Where and how the Kata backend runs pods.

    ``namespace`` may contain ``{tenant}``: each tenant then gets its own namespace (the tenant is
    made a DNS label first, see :func:`sandbox.kata.naming.namespace_for`). The namespaces must
    exist (``infra/`` creates them with their quotas and NetworkPolicies); the backend never creates
    or deletes a namespace.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTIC_SANDBOX_KATA_", extra="ignore")

    # Cluster access: a kubeconfig file (None: $KUBECONFIG or ~/.kube/config) or the pod's
    # service account when the server itself runs in the cluster.
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    namespace: str = "agentic-sandboxes"
    runtime_class: RuntimeClassName = "kata-qemu"
    # Library set name -> image (pin it by digest: name@sha256:...; preflight warns otherwise).
    # The image needs python3 at ``python_path`` (the in-pod runner is a Python script) and, for
    # TypeScript, Deno at /opt/deno/deno (the images from infra/ have both).
    images: dict[str, str] = Field(default_factory=dict)
    python_path: str = "/usr/bin/python3"
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    run_as_uid: int = Field(default=65534, gt=0)
    run_as_gid: int = Field(default=65534, gt=0)
    # Leftovers: every object carries an expiry (unix time) label; the reaper deletes expired ones.
    pod_ttl_s: int = Field(default=3600, gt=0)
    reap_interval_s: float = Field(default=300.0, ge=0)  # 0: no background reaper (call reap())
    # How long a pod may take from creation to its program starting (scheduling, image pull).
    start_timeout_s: float = Field(default=120.0, gt=0)
    # activeDeadlineSeconds = wall_seconds + this (the in-pod runner kills at wall_seconds itself;
    # the pod deadline is the backstop and also covers the image pull).
    deadline_grace_s: int = Field(default=30, ge=0)
    # A run's files (compressed, with stdin) up to this size travel in a ConfigMap (binaryData);
    # larger sets go over exec into the pod's scratch dir (exec + tar), up to the run's disk_mb.
    configmap_max_bytes: int = Field(default=900 * 1024, gt=0, le=1_000_000)
    # Runs with network=True get HTTP(S)_PROXY pointing here: the platform's egress proxy as seen
    # from sandbox pods (infra/base/egress-proxy/, its Service's name by default); NetworkPolicies
    # from infra/ let only pods labelled for egress reach it. Empty: runs asking for network are
    # refused. The browser's --proxy-server is this URL too.
    egress_proxy_url: str | None = DEFAULT_EGRESS_PROXY_URL
    # The proxy's IP address as sandbox pods reach it. Sandbox pods have no DNS (the tenant
    # NetworkPolicies deny it: a resolver is a way out), so a proxy named by host name is written into
    # their /etc/hosts (``hostAliases``). None: the backend resolves the name once when it opens.
    egress_proxy_ip: str | None = None
    # Signs each pod's run identity (tenant, run, expiry; sandbox.egress_identity), which goes into
    # its proxy URL's userinfo so the proxy logs every decision with tenant and run. The proxy's
    # AGENTIC_EGRESS_PROXY_IDENTITY_SECRET must be the same value (infra/: one Secret key). Empty:
    # no identities (the proxy then knows a pod by its IP only).
    egress_identity_secret: IdentitySecret = Field(default=None, repr=False)
    # The browser (sandbox.kata.browser): an image with python3 and Chromium at ``browser_path``;
    # unset, browser sessions on this backend are refused with a message saying so.
    browser_image: str | None = None
    browser_path: str = "/usr/bin/chromium"
    # Hosted apps are reached through the platform's reverse proxy (/apps/{id}/ on the server, which
    # checks the app's token or signed link and the tenant) dialling the app's Service. ``app_ingress``
    # adds an Ingress per app straight to that Service: it bypasses those checks, so it is off unless
    # the operator wants every app public (and opens the tenant NetworkPolicy to the ingress
    # controller). Its shape: by path (/apps/{id}/) on ``apps_host`` (None: any host), or by host
    # ({id}.{apps_domain}) when ``apps_domain`` is set.
    app_ingress: bool = False
    apps_host: str | None = None
    apps_domain: str | None = None
    ingress_class: str | None = None
    app_ttl_s: int = Field(default=1800, gt=0)
    # kubernetes-sigs/agent-sandbox: claim from a SandboxWarmPool instead of creating a bare pod
    # (runs without network whose limits fit the pool's pods; the others still get a bare pod).
    use_agent_sandbox: bool = False
    warm_pool_size: int = Field(default=2, ge=0)
    warm_pool_memory_mb: int = Field(default=512, gt=0)
    warm_pool_cpus: float = Field(default=1.0, gt=0)
    warm_pool_disk_mb: int = Field(default=256, gt=0)

    @field_validator("egress_proxy_url")
    @classmethod
    def _empty_means_no_proxy(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("namespace")
    @classmethod
    def _namespace_is_a_label(cls, value: str) -> str:
        probe = value.replace("{tenant}", "t")
        if not _DNS_LABEL.match(probe) or len(probe) > 63:
            raise ValueError(
                f"namespace {value!r} is not a DNS label (lowercase letters, digits, '-'), "
                "optionally with one {tenant} placeholder"
            )
        return value

    @field_validator("images")
    @classmethod
    def _set_names_are_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name, image in value.items():
            if not _DNS_LABEL.match(name) or not image.strip():
                raise ValueError(f"library set {name!r} -> {image!r}: names are DNS labels, images non-empty")
        return value
