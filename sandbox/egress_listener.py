"""The egress proxy as a cluster service: its settings and a TCP listener that runs until stopped.

Why a module of its own: on one host the proxy lives inside the server (a Unix socket per run); on
Kubernetes it is its own Deployment (``infra/base/egress-proxy/``), reached by sandbox pods through
a Service on port 3128 and started with ``agentic egress-proxy``. Same
:class:`~sandbox.egress_proxy.EgressProxy`, same policy: names resolved here, loopback / private /
link-local / metadata addresses refused, and the platform's ports refused on loopback and this
pod's own addresses. The public internet is allowed only with
``AGENTIC_EGRESS_PROXY_ALLOW_INTERNET=true`` (the manifests set it: only pods the server labelled
for network may reach the proxy at all).

Who a connection belongs to: with ``AGENTIC_EGRESS_PROXY_IDENTITY_SECRET`` (the same value as the
server's ``AGENTIC_SANDBOX_KATA_EGRESS_IDENTITY_SECRET``) every request must carry its run's signed
identity (:mod:`sandbox.egress_identity`), and decisions are logged with its tenant and run; without
it, with the pod's IP only.

A tenant's hosted apps (``http://<app_id>.apps.internal/``): with the identity secret and
``AGENTIC_EGRESS_PROXY_APPS_UPSTREAM`` (the server's internal URL) such requests go to the server's
app proxy with the verified identity (:mod:`sandbox.egress_apps`); otherwise they are refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.egress_apps import AppsUpstream
from sandbox.egress_identity import IdentitySecret
from sandbox.egress_policy import EgressPolicy
from sandbox.egress_proxy import EgressChannel, EgressProxy

__all__ = ["EgressListenerSettings", "serve_egress_proxy"]

logger = logging.getLogger(__name__)


class EgressListenerSettings(BaseSettings):
    """Where the cluster's egress proxy listens and what it lets through (``AGENTIC_EGRESS_PROXY_*``)."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_EGRESS_PROXY_", extra="ignore")

    host: str = "0.0.0.0"  # noqa: S104 (a pod's interface; NetworkPolicies say who may connect)
    port: int = Field(default=3128, ge=0, lt=65536)
    allow_internet: bool = False
    # Internal networks (CIDRs) or host names the operator opens, as AGENTIC_SANDBOX_EGRESS_ALLOW.
    allow: list[str] = Field(default_factory=list)
    # Refused on loopback and this pod's addresses even when allow-listed: Postgres, the API, the
    # Kubernetes API server, the kubelet.
    platform_ports: list[int] = Field(default_factory=lambda: [5432, 8000, 6443, 10250])
    # The secret run identities are signed with (the server's AGENTIC_SANDBOX_KATA_EGRESS_IDENTITY_SECRET,
    # from the same Secret key). Set: a request without a valid identity gets 407. Empty: no identities.
    identity_secret: IdentitySecret = Field(default=None, repr=False)
    # The server's internal URL (its Service, e.g. http://agentic-server.agentic-system.svc.cluster.local:80):
    # plain HTTP to <app_id>.apps.internal goes there with the run's identity, and the server serves
    # the app to that tenant only. Needs identity_secret. Empty: such names are refused.
    apps_upstream: str = ""

    @field_validator("apps_upstream")
    @classmethod
    def _check_apps_upstream(cls, value: str) -> str:
        if value.strip():
            AppsUpstream.from_url(value)  # a clear ValueError for a bad URL, at start-up
        return value.strip()

    def apps(self) -> AppsUpstream | None:
        """Where app requests go (None: not routed)."""
        return AppsUpstream.from_url(self.apps_upstream) if self.apps_upstream else None

    def policy(self) -> EgressPolicy:
        """The proxy's policy from these settings."""
        return EgressPolicy.from_entries(
            self.allow, allow_internet=self.allow_internet, platform_ports=self.platform_ports
        )


async def serve_egress_proxy(
    settings: EgressListenerSettings, *, started: Callable[[EgressChannel], None] | None = None
) -> None:
    """Listen on ``settings.host:port`` until cancelled (``started`` gets the listener once bound)."""
    proxy = EgressProxy(settings.policy())
    secret = settings.identity_secret.get_secret_value() if settings.identity_secret else None
    apps = settings.apps()
    channel = await proxy.listen_tcp(settings.host, settings.port, identity_secret=secret, apps_upstream=apps)
    assert channel.address is not None
    logger.info(
        "egress proxy listening on %s:%d (public internet %s, allow-list %s, run identities %s, apps %s)",
        *channel.address,
        "allowed" if settings.allow_internet else "refused",
        settings.allow or "empty",
        "required" if secret else "off: decisions name the client's IP only",
        f"via the server at {apps.address}" if apps and secret else "refused",
    )
    if apps is not None and secret is None:
        logger.warning(
            "AGENTIC_EGRESS_PROXY_APPS_UPSTREAM is set but AGENTIC_EGRESS_PROXY_IDENTITY_SECRET is "
            "empty: <app_id>.apps.internal stays refused (the server needs the run's signed tenant)"
        )
    if started is not None:
        started(channel)
    try:
        await asyncio.Event().wait()
    finally:
        await channel.close()
        logger.info("egress proxy stopped")
