"""The egress proxy's address as sandbox pods see it: resolved once, by the backend, not by the pods.

Why: the tenant NetworkPolicies give sandbox pods no DNS (a resolver answers whatever it is asked, so
it is a way out), yet the proxy is named by its Service's host name. The server has DNS; it resolves
the name when the backend opens, and the pods get the answer in ``/etc/hosts`` (``hostAliases``,
:func:`sandbox.kata.manifests.egress_host_aliases`). A ClusterIP does not change for the Service's
life, so one lookup per process is enough.

It also signs what a pod tells the proxy about itself (:func:`pod_proxy_url`): with
``egress_identity_secret`` set, the proxy URL a pod with network gets carries the run's identity
(:mod:`sandbox.egress_identity`), valid while that pod can live and no longer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from sandbox.egress_identity import proxy_url_with_identity, sign_identity
from sandbox.errors import InvalidRunRequestError
from sandbox.kata.settings import KataSettings

__all__ = ["pod_proxy_url", "resolve_egress_proxy"]

logger = logging.getLogger(__name__)

_RESOLVE_TIMEOUT_S = 5.0


async def resolve_egress_proxy(settings: KataSettings) -> KataSettings:
    """``settings`` with ``egress_proxy_ip`` filled in when the proxy is named by host name.

    Left as is when the operator gave the IP, when the URL already holds an IP, or when there is no
    proxy. A failed lookup is logged and leaves the name to the pod (network runs then fail to reach
    the proxy, with the lookup's error in the server's log).
    """
    url = settings.egress_proxy_url
    if not url or settings.egress_proxy_ip:
        return settings
    host = urlsplit(url).hostname
    if not host:
        return settings
    try:
        ipaddress.ip_address(host)
        return settings
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), _RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        logger.warning("could not resolve the egress proxy %s for sandbox pods: %s", host, exc)
        return settings
    address = str(infos[0][4][0])
    logger.info("sandbox pods reach the egress proxy %s at %s (hostAliases)", host, address)
    return settings.model_copy(update={"egress_proxy_ip": address})


def pod_proxy_url(
    settings: KataSettings, labels: Mapping[str, str], *, run: str, life_s: float
) -> str | None:
    """The egress proxy URL for a pod of one run, service or browser (None: no proxy configured).

    With ``egress_identity_secret`` it carries a signed identity naming ``labels``' tenant and run
    (the platform's labels: ``run`` when they name none), valid for the pod's longest life
    ``life_s`` plus ``start_timeout_s`` (scheduling, image pull) and ``deadline_grace_s``.

    Raises:
        InvalidRunRequestError: tenant or run id too long to sign.
    """
    url = settings.egress_proxy_url
    secret = settings.egress_identity_secret
    if not url or secret is None:
        return url
    try:
        token = sign_identity(
            secret.get_secret_value(),
            tenant=labels.get("tenant") or "default",
            run=labels.get("run") or run,
            expires_at=math.ceil(time.time() + life_s + settings.start_timeout_s + settings.deadline_grace_s),
        )
    except ValueError as exc:
        raise InvalidRunRequestError(f"cannot sign the run's egress identity: {exc}") from exc
    return proxy_url_with_identity(url, token)
