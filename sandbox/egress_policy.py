"""Where sandboxed code may connect: the one decision of the egress proxy, made after DNS resolution.

Why a pure function over addresses: the proxy resolves every name itself and connects to the exact
address it approved, so a name whose DNS answer is private, a redirect to a metadata address or an
IP literal all meet the same check, and tests can exercise it with a stub resolver without a single
packet leaving loopback. Order of the checks (:meth:`EgressPolicy.decide_address`):

1. a platform port (the API, Postgres) on a loopback, unspecified or host-local address: refused,
   even when an allow-list entry covers the address;
2. an address inside an operator allow-list network (``egress_allow``): allowed;
3. loopback, unspecified, private, carrier-grade NAT, link-local, metadata, multicast, reserved or
   one of the host's own addresses: refused;
4. anything else is the public internet: allowed only when the server allows network.

A name is allowed only when *every* address it resolves to is (one private answer is a rebinding
attempt); a name listed in the allow-list opens its addresses (step 3), never platform ports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["METADATA_ADDRESSES", "Decision", "EgressPolicy", "Resolver", "host_addresses", "system_resolver"]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: the proxy's only way to turn a name into addresses."""

# Cloud instance metadata endpoints (AWS/GCP/Azure/OpenStack, Alibaba, AWS IPv6).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class Decision:
    """The outcome for one destination: ``address`` is what the proxy connects to when allowed."""

    allowed: bool
    reason: str
    address: str | None = None


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the host's resolver (TCP addresses, IPv4 and IPv6)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def host_addresses() -> frozenset[IPAddress]:
    """The host's own addresses (from ``/proc/net``): reaching them reaches the platform itself."""
    found: set[IPAddress] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for prev, line in zip(lines, lines[1:], strict=False):
        if "/32 host LOCAL" in line:
            found.add(ipaddress.ip_address(prev.split()[-1]))
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(ipaddress.ip_address(":".join(raw[i : i + 4] for i in range(0, 32, 4))))
    except (OSError, ValueError, IndexError):
        pass
    return frozenset(found)


def _parse(address: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _category(ip: IPAddress, own: frozenset[IPAddress]) -> str | None:
    """Why ``ip`` is not the public internet, or None when it is."""
    if ip in METADATA_ADDRESSES:
        return "metadata address"
    checks = (
        ("loopback address", ip.is_loopback),
        ("unspecified address", ip.is_unspecified),
        ("link-local address", ip.is_link_local),
        ("multicast address", ip.is_multicast),
        ("host's own address", ip in own),
        ("carrier-grade NAT address", isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT),
        ("private address", ip.is_private),
        ("reserved address", ip.is_reserved or not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


@dataclass(frozen=True, kw_only=True)
class EgressPolicy:
    """What the egress proxy lets through (built from settings; see the module docstring)."""

    allow_internet: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    platform_ports: frozenset[int] = frozenset()
    own_addresses: frozenset[IPAddress] = field(default_factory=host_addresses)

    @classmethod
    def from_entries(
        cls, entries: Iterable[str], *, allow_internet: bool, platform_ports: Iterable[int] = ()
    ) -> EgressPolicy:
        """Split allow-list entries into networks (``10.0.0.0/8``, ``10.1.2.3``) and host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(
            allow_internet=allow_internet,
            allow_networks=tuple(networks),
            allow_hosts=frozenset(hosts),
            platform_ports=frozenset(platform_ports),
        )

    def decide_address(self, address: str, port: int, *, named_allowed: bool = False) -> Decision:
        """Decide one resolved address (``named_allowed``: the name was on the allow-list)."""
        ip = _parse(address)
        if ip is None:
            return Decision(False, f"not an IP address: {address!r}")
        if not 0 < port < 65536:
            return Decision(False, f"bad port {port}")
        platform_side = ip.is_loopback or ip.is_unspecified or ip in self.own_addresses
        if port in self.platform_ports and platform_side:
            return Decision(False, f"platform port {port}")
        if any(ip.version == net.version and ip in net for net in self.allow_networks):
            return Decision(True, "allow-list", str(ip))
        category = _category(ip, self.own_addresses)
        if category is not None:
            if named_allowed:
                return Decision(True, "allow-listed name", str(ip))
            return Decision(False, category)
        if not self.allow_internet:
            return Decision(False, "public internet not allowed on this server")
        return Decision(True, "public internet", str(ip))

    async def decide(self, host: str, port: int, resolver: Resolver = system_resolver) -> Decision:
        """Resolve ``host`` (unless it is an IP literal) and decide; every answer must pass."""
        host = host.strip().lower().rstrip(".").strip("[]")
        if not host:
            return Decision(False, "empty host name")
        if _parse(host) is not None:
            return self.decide_address(host, port)
        named = host in self.allow_hosts
        try:
            answers = await resolver(host, port)
        except (OSError, UnicodeError) as exc:
            return Decision(False, f"cannot resolve {host}: {exc}")
        if not answers:
            return Decision(False, f"no address for {host}")
        decisions = [self.decide_address(a, port, named_allowed=named) for a in answers]
        refused = next((d for d in decisions if not d.allowed), None)
        if refused is not None:
            return Decision(False, f"{host} resolves to a refused address ({refused.reason})")
        return Decision(True, decisions[0].reason, decisions[0].address)


def log_decision(decision: Decision, host: str, port: int, labels: Mapping[str, str]) -> None:
    """Log one decision with the run's tenant and id, and the client's address when known (TCP mode)."""
    logger.info(
        "egress %s %s:%d -> %s (%s) tenant=%s run=%s client=%s",
        "ALLOW" if decision.allowed else "DENY",
        host,
        port,
        decision.address or "-",
        decision.reason,
        labels.get("tenant", "-"),
        labels.get("run", "-"),
        labels.get("client", "-"),
    )
