"""The fake cluster's pod network: each pod its own network namespace and a loopback "pod IP".

A real pod has its own network namespace and an IP that other pods (here: the platform server)
reach on the ports its container listens on; NetworkPolicies decide what else it reaches. The fake
kubelet keeps every container in its own namespace (bubblewrap ``--unshare-net``, only ``lo``) and
emulates the rest with the platform's own in-sandbox forwarder (:mod:`sandbox.host.forwarder`),
started in front of the container's command (it execs that command, so pid and exit status stay
the container's):

* **pod IP**: each pod gets ``127.77.x.y`` (reported as ``status.podIP``). For every declared
  ``containerPort`` the kubelet listens on ``podIP:port`` on the host and relays each connection
  over a Unix socket (bound into the container) to ``127.0.0.1:port`` inside: the pod's port. An
  address whose port another process's fake holds (tests running side by side) is skipped.
* **egress**: only pods labelled ``agentic.dev/network=egress`` reach anything, and only the egress
  proxy (what ``infra/``'s NetworkPolicies allow): inside, ``127.0.0.1:<proxy port>`` relays to a
  channel of the test's :class:`~sandbox.egress_proxy.EgressProxy` opened for that pod's labels,
  or, with ``Egress.tcp``, to the proxy's TCP listener as on a cluster (the pod is then known by
  what it sends: its signed run identity).

So no sandboxed container shares the host's network namespace, even in the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.egress_proxy import EgressChannel, EgressProxy

Json = dict[str, Any]
FORWARDER = Path(__file__).resolve().parents[3] / "sandbox" / "host" / "forwarder.py"
INSIDE = "/run/fake-kubelet"  # where the pod's sockets and the forwarder are bound in the container
NETWORK_LABEL = "agentic.dev/network"


@dataclass
class Egress:
    """The cluster's egress proxy as pods see it: ``127.0.0.1:port`` inside, ``proxy`` behind it."""

    proxy: EgressProxy
    port: int = 3128
    tcp: EgressChannel | None = None  # the proxy's listen_tcp channel: pods reach it unlabelled


@dataclass
class PodNetwork:
    """One pod's address, host listeners and egress channel."""

    ip: str
    bwrap_args: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)  # forwarder argv before the container's command
    servers: list[asyncio.AbstractServer] = field(default_factory=list)
    channel: EgressChannel | None = None

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers = []
        if self.channel is not None:
            await self.channel.close()
            self.channel = None


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until EOF, then half-close ``writer`` (one direction of a relay)."""
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()


class FakeNetwork:
    """Hands out pod IPs and wires each pod's ports and egress."""

    def __init__(self) -> None:
        self.egress: Egress | None = None  # set by a test: pods labelled for egress reach this proxy
        self._ips = (f"127.77.{n // 250}.{n % 250 + 2}" for n in itertools.count())

    async def attach(self, pod: Json, container: Json, workdir: Path) -> PodNetwork:
        """Address the pod, listen on its ports, open its egress; what to add to its bwrap command."""
        sockets = workdir / "net"
        sockets.mkdir(mode=0o777)
        sockets.chmod(0o777)
        ports = [p["containerPort"] for p in container.get("ports") or []]
        net = await self._address(ports, sockets)
        forwarder_args: list[str] = []
        for port in ports:
            forwarder_args += ["--ingress", f"{INSIDE}/in-{port}.sock", str(port)]
        labels = pod["metadata"].get("labels") or {}
        if self.egress is not None and labels.get(NETWORK_LABEL) == "egress":
            if self.egress.tcp is not None and self.egress.tcp.address is not None:
                net.servers.append(await self._to_tcp(sockets / "egress.sock", self.egress.tcp.address))
            else:
                net.channel = await self.egress.proxy.open_channel(sockets / "egress.sock", labels)
            forwarder_args += ["--egress", str(self.egress.port), f"{INSIDE}/egress.sock"]
        if forwarder_args:
            net.bwrap_args = ["--bind", str(sockets), INSIDE, "--ro-bind", str(FORWARDER), f"{INSIDE}-fwd.py"]
            net.prefix = ["/usr/bin/python3", "-I", "-S", f"{INSIDE}-fwd.py", *forwarder_args, "--"]
        return net

    async def _address(self, ports: list[int], sockets: Path) -> PodNetwork:
        """The next pod IP on which every port of the pod can listen."""
        while True:
            net = PodNetwork(ip=next(self._ips))
            try:
                for port in ports:
                    net.servers.append(await self._listen(net.ip, port, sockets / f"in-{port}.sock"))
            except OSError as exc:
                await net.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            return net

    @staticmethod
    async def _listen(ip: str, port: int, inside: Path) -> asyncio.AbstractServer:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(str(inside))
            except OSError:  # nothing listens in the pod yet: refused, as a closed port is
                writer.close()
                return
            try:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            except asyncio.CancelledError:
                pass  # the pod's port closed (the pod was deleted)
            finally:
                writer.close()
                up_writer.close()

        return await asyncio.start_server(relay, ip, port)

    @staticmethod
    async def _to_tcp(path: Path, address: tuple[str, int]) -> asyncio.AbstractServer:
        """The pod's egress socket relayed to the proxy's TCP listener (no labels added on the way)."""

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(*address)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            except asyncio.CancelledError:
                pass
            finally:
                writer.close()
                up_writer.close()

        server = await asyncio.start_unix_server(relay, path=str(path))
        path.chmod(0o666)
        return server
