"""The egress proxy's address as sandbox pods see it: resolved once, by the backend, not by the pods.

Why: the tenant NetworkPolicies give sandbox pods no DNS (a resolver answers whatever it is asked, so
it is a way out), yet the proxy is named by its Service's host name. The server has DNS; it resolves
the name when the backend opens, and the pods get the answer in ``/etc/hosts`` (``hostAliases``,
:func:`sandbox.kata.manifests.egress_host_aliases`). A ClusterIP does not change for the Service's
life, so one lookup per process is enough.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from sandbox.kata.settings import KataSettings

__all__ = ["resolve_egress_proxy"]

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
