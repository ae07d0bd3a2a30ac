"""The fake cluster's Services: a loopback ClusterIP each, relayed to a ready pod (kube-proxy's part).

A real ``ClusterIP`` Service gets an address from the service range when it is created (the API
server allocates it and answers the create with it); kube-proxy then sends each connection to
``clusterIP:port`` to one ready endpoint: a pod the selector matches whose ``Ready`` condition is
True, at its ``targetPort`` (a number, or the name of a container port). The fake does the same on
loopback: ``127.96.x.y`` (kubeadm's default range is 10.96.0.0/12), a listener on each port of the
Service, and per connection a relay to the chosen pod's IP, where :mod:`fake_network` listens for
the pod. No ready pod: the connection is closed at once (kube-proxy rejects it). A headless
Service (``clusterIP: None``) and an ``ExternalName`` get no address, as on a real cluster.

The Service as answered (the defaults the API server fills in and the address) is checked against
the schema like the created body. Port 80 on loopback needs root or a low
``net.ipv4.ip_unprivileged_port_start``; otherwise the create is answered with an error saying so.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from tests.sandbox.kata.fake_network import pipe
from tests.sandbox.kata.schemas import problems

Json = dict[str, Any]
SERVICE_RANGE = "127.96"  # the first two octets of the fake's ClusterIPs


class ServiceError(Exception):
    """The fake cannot give a Service what it asks: ``status`` 422 (the request), 500 (the fake)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def pod_ready(pod: Json) -> bool:
    """Running with its ``Ready`` condition True (what a Deployment and an EndpointSlice count)."""
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return status.get("phase") == "Running" and ready


def _target_port(pod: Json, target: int | str) -> int | None:
    """The pod's port for ``target``: the number itself, or the container port of that name."""
    if isinstance(target, int):
        return target
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


class FakeServices:
    """Allocates ClusterIPs and relays them; ``pods(namespace)`` gives the pods the fake stores."""

    def __init__(self, pods: Callable[[str], Iterable[Json]], *, validate: bool = True) -> None:
        self.pods = pods
        self.validate = validate  # as FakeKube's: the bench turns schema checks off
        self.listeners: dict[tuple[str, str], list[asyncio.AbstractServer]] = {}
        self.relays: dict[tuple[str, str], set[asyncio.StreamWriter]] = {}  # open client connections
        self.connections = 0  # connections relayed to a pod (tests check traffic went this way)
        self._ips = (f"{SERVICE_RANGE}.{n // 250}.{n % 250 + 2}" for n in itertools.count())

    async def open(self, namespace: str, service: Json) -> None:
        """Fill in what the API server would (address, defaults) and listen on the address.

        Raises:
            ServiceError: the answered Service would not match the schema, or nothing can listen.
        """
        spec = service.setdefault("spec", {})
        kind = spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port["port"])
        if kind == "ExternalName" or spec.get("clusterIP") == "None":
            return
        if spec.get("clusterIP"):
            raise ServiceError("spec.clusterIP: the fake allocates every address itself", 422)
        spec.update(ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack", internalTrafficPolicy="Cluster")
        key = (namespace, service["metadata"]["name"])
        while True:
            address = next(self._ips)
            servers: list[asyncio.AbstractServer] = []
            try:
                for port in spec.get("ports") or []:
                    relay = self._relay(key, spec, port)
                    servers.append(await asyncio.start_server(relay, address, port["port"]))
            except OSError as exc:
                for server in servers:
                    server.close()
                if exc.errno == errno.EADDRINUSE:  # another test process's fake has it: the next one
                    continue
                hint = " (the fake's Services need root or a low net.ipv4.ip_unprivileged_port_start)"
                raise ServiceError(
                    f"cannot listen on {address}: {exc}{hint if isinstance(exc, PermissionError) else ''}"
                ) from exc
            break
        spec.update(clusterIP=address, clusterIPs=[address])
        problem = problems(service) if self.validate else None
        if problem is not None:
            for server in servers:
                server.close()
            raise ServiceError(f"the fake's answer does not match the schema: {problem}")
        self.listeners[key] = servers
        self.relays[key] = set()

    def _relay(
        self, key: tuple[str, str], spec: Json, port: Json
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            endpoint = self._endpoint(key[0], spec.get("selector") or {}, port["targetPort"])
            open_relays = self.relays.get(key)
            if endpoint is None or open_relays is None:
                writer.close()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*endpoint)
            except OSError:
                writer.close()
                return
            self.connections += 1
            open_relays |= {writer, up_writer}
            try:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            finally:
                open_relays -= {writer, up_writer}
                writer.close()
                up_writer.close()

        return relay

    def _endpoint(
        self, namespace: str, selector: dict[str, str], target: int | str
    ) -> tuple[str, int] | None:
        """A ready pod of the selector and its port (a Service without a selector has no endpoints)."""
        if not selector:
            return None
        for pod in self.pods(namespace):
            labels = pod["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in selector.items()) and pod_ready(pod):
                port = _target_port(pod, target)
                if port is not None and pod["status"].get("podIP"):
                    return pod["status"]["podIP"], port
        return None

    async def close_one(self, namespace: str, name: str) -> None:
        """Stop answering on the Service's address and end its connections (it was deleted)."""
        for server in self.listeners.pop((namespace, name), []):
            server.close()
        for writer in self.relays.pop((namespace, name), set()):
            writer.close()

    async def close(self) -> None:
        for namespace, name in list(self.listeners):
            await self.close_one(namespace, name)
