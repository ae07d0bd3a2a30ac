"""An in-process fake of the Kubernetes API server (Starlette on 127.0.0.1), for the real client.

What it does, and only that: stores objects per namespace with resource versions; validates every
created object against its published schema (:mod:`tests.sandbox.kata.schemas`) and answers 422
when it does not match (the error is also kept in :attr:`FakeKube.invalid`); lists with label and
field selectors; streams watches (from a ``resourceVersion``) and pod logs (``follow``); serves
``exec`` over the ``v4.channel.k8s.io`` websocket protocol; answers SelfSubjectAccessReviews,
namespaces, RuntimeClasses, CRDs and ``/version``. Pods run on :class:`FakeKubelet`; Deployments
and SandboxClaims get a pod each from a minimal controller, and are ready when that pod is; Services
get a loopback ClusterIP relayed to a ready pod (:mod:`fake_services`). Tests inject failures with
:meth:`FakeKube.fail` (an HTTP status for matching requests) and cut watches / log streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from tests.sandbox.kata.fake_kubelet import FakeKubelet, Scenario, Signal, now
from tests.sandbox.kata.fake_services import FakeServices, ServiceError, pod_ready
from tests.sandbox.kata.fake_streams import (
    error,
    exec_pod,
    log_response,
    matches,
    watch_response,
)
from tests.sandbox.kata.schemas import problems

Json = dict[str, Any]
_CLUSTER_SCOPED = {"namespaces", "runtimeclasses", "customresourcedefinitions", "selfsubjectaccessreviews"}
_KINDS = {
    "pods": "Pod",
    "configmaps": "ConfigMap",
    "services": "Service",
    "deployments": "Deployment",
    "ingresses": "Ingress",
    "sandboxclaims": "SandboxClaim",
    "sandboxtemplates": "SandboxTemplate",
    "sandboxwarmpools": "SandboxWarmPool",
}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int = 1


class FakeKube:
    """The fake server's state and routes; ``async with FakeKube() as kube`` serves it on 127.0.0.1."""

    def __init__(self, *, validate: bool = True) -> None:
        self.validate = validate  # the bench turns schema checks off: they are the fake's cost, not the API's
        self.objects: dict[tuple[str, str, str], Json] = {}  # (resource, namespace, name) -> object
        self.events: list[tuple[int, str, str, str, Json]] = []  # (rv, resource, namespace, type, object)
        self.changed = Signal()
        self.rv = itertools.count(1000)
        self.namespaces = {"agentic-sandboxes", "default"}
        self.runtime_classes = {"kata-qemu", "kata-clh", "kata-fc"}
        self.crds: set[str] = set()
        self.denied: set[tuple[str, str]] = set()  # (verb, resource[/sub]) refused by SelfSubjectAccessReview
        self.scenarios: deque[Scenario] = deque()
        self.default_scenario = Scenario()  # for pods when no scenario is queued
        self.faults: list[Fault] = []
        self.invalid: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.watch_versions: list[str | None] = []  # resourceVersion each pod watch started from
        self.watch_cuts: deque[str] = deque()  # next pod watches: "abort" (drop) or "gone" (410)
        # next pod log streams: "abort" (dropped after the first line) or "midline" (ends cleanly
        # after the first line and part of the second)
        self.log_cuts: deque[str] = deque()
        self.kubelet = FakeKubelet(
            self._update_pod, lambda ns, name: self.objects.get(("configmaps", ns, name))
        )
        self.services = FakeServices(
            lambda ns: [o for (r, n, _), o in list(self.objects.items()) if r == "pods" and n == ns],
            validate=validate,
        )
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    # --- test controls ---------------------------------------------------------------------------

    def fail(self, method: str, path: str, status: int, times: int = 1) -> None:
        """The next ``times`` requests ``method`` on a path matching ``path`` get ``status``."""
        self.faults.append(Fault(method, re.compile(path), status, times))

    def stored(self, resource: str | None = None) -> list[tuple[str, str, str]]:
        """Keys of the stored objects (of ``resource``), namespaces and cluster objects excluded."""
        return [k for k in self.objects if resource is None or k[0] == resource]

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path

    async def __aenter__(self) -> FakeKube:
        sock = socket.socket()
        sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )  # accepted sockets inherit it (no 40 ms stalls)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                WebSocketRoute(
                    "/api/v1/namespaces/{namespace}/pods/{name}/exec", lambda ws: exec_pod(self, ws)
                ),
                Route("/{path:path}", self.handle, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
            ]
        )
        config = uvicorn.Config(app, log_level="critical", lifespan="off", ws="auto")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.services.close()
        await self.kubelet.close()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 5)

    # --- storage ---------------------------------------------------------------------------------

    async def _emit(self, resource: str, namespace: str, kind: str, obj: Json) -> None:
        version = next(self.rv)
        obj["metadata"]["resourceVersion"] = str(version)
        self.events.append((version, resource, namespace, kind, json.loads(json.dumps(obj))))
        self.changed.fire()

    async def put(self, resource: str, namespace: str, obj: Json) -> Json:
        meta = obj.setdefault("metadata", {})
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        self.objects[(resource, namespace, meta["name"])] = obj
        await self._emit(resource, namespace, "ADDED", obj)
        return obj

    async def remove(self, resource: str, namespace: str, name: str) -> Json | None:
        obj = self.objects.pop((resource, namespace, name), None)
        if obj is None:
            return None
        if resource == "pods":
            await self.kubelet.stop(namespace, name)
        if resource == "services":
            await self.services.close_one(namespace, name)
        await self._emit(resource, namespace, "DELETED", obj)
        if resource == "deployments":
            selector = obj["spec"]["selector"]["matchLabels"]
            for key in [k for k, o in self.objects.items() if k[0] == "pods" and k[1] == namespace]:
                if all(
                    self.objects[key]["metadata"].get("labels", {}).get(a) == b for a, b in selector.items()
                ):
                    await self.remove("pods", namespace, key[2])
        if resource == "sandboxclaims":
            await self.remove("pods", namespace, f"{name}-sandbox")
        return obj

    async def _update_pod(self, namespace: str, name: str, change: Callable[[Json], None]) -> None:
        pod = self.objects.get(("pods", namespace, name))
        if pod is None:
            return
        change(pod)
        await self._emit("pods", namespace, "MODIFIED", pod)
        await self._after_pod_change(pod)

    async def _after_pod_change(self, pod: Json) -> None:
        """The controllers' view: a Deployment is ready when its pod is, a SandboxClaim once it runs."""
        meta = pod["metadata"]
        running = pod.get("status", {}).get("phase") == "Running"
        owner = meta.get("labels", {}).get("fake/owner", "")
        deployment = self.objects.get(("deployments", meta["namespace"], owner.removeprefix("deployment:")))
        if owner.startswith("deployment:") and deployment is not None:
            ready = int(pod_ready(pod))
            status = {
                "replicas": 1,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": 1,
            }
            if deployment.get("status") != status:
                deployment["status"] = status
                await self._emit("deployments", meta["namespace"], "MODIFIED", deployment)
        if owner.startswith("claim:") and running:
            claim = self.objects.get(("sandboxclaims", meta["namespace"], owner[6:]))
            if claim is not None:
                claim["status"] = {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "DependenciesReady",
                            "message": "",
                            "lastTransitionTime": now(),
                        }
                    ],
                    "sandbox": {"name": meta["name"]},
                }
                await self._emit("sandboxclaims", meta["namespace"], "MODIFIED", claim)

    # --- HTTP -----------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        self.requests.append((method, path))
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and fault.path.search(path):
                fault.times -= 1
                return error(
                    fault.status,
                    {403: "Forbidden", 409: "AlreadyExists"}.get(fault.status, "InternalError"),
                    f"injected {fault.status}",
                )
        if path.rstrip("/") == "/version":
            info = dict.fromkeys(
                ("buildDate", "compiler", "gitCommit", "gitTreeState", "goVersion", "platform"), "fake"
            )
            return JSONResponse({**info, "gitVersion": "v1.33.0-fake", "major": "1", "minor": "33"})
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            rest = parts[2:]
        elif parts[0] == "apis":
            rest = parts[3:]
        else:
            return error(404, "NotFound", f"no route {path}")
        if rest[:1] == ["namespaces"] and len(rest) == 2:
            return self._namespace(rest[1])
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, resource, name, sub = (
                rest[1],
                rest[2],
                (rest[3:4] or [None])[0],
                (rest[4:5] or [None])[0],
            )
        else:
            namespace, resource, name, sub = "", rest[0], (rest[1:2] or [None])[0], None
        query = request.query_params
        if resource in _CLUSTER_SCOPED:
            return await self._cluster(method, resource, name, request)
        if method == "POST" and name is None:
            return await self._create(resource, namespace, await request.json())
        if method == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                return watch_response(self, resource, namespace, query)
            items = [
                o
                for (r, ns, _), o in self.objects.items()
                if r == resource
                and (not namespace or ns == namespace)
                and matches(o, query.get("labelSelector"), query.get("fieldSelector"))
            ]
            return JSONResponse(
                {
                    "apiVersion": "v1",
                    "kind": f"{_KINDS.get(resource, 'Object')}List",
                    "metadata": {"resourceVersion": str(next(self.rv))},
                    "items": items,
                }
            )
        obj = self.objects.get((resource, namespace, name or ""))
        if method == "GET" and sub == "log" and resource == "pods":
            if obj is None:
                return error(404, "NotFound", f'pods "{name}" not found')
            return log_response(self, namespace, name or "", query.get("follow") == "true")
        if obj is None:
            return error(404, "NotFound", f'{resource} "{name}" not found')
        if method == "GET":
            return JSONResponse(obj)
        if method == "DELETE":
            removed = await self.remove(resource, namespace, name or "")
            return JSONResponse(removed)
        return error(405, "MethodNotAllowed", f"{method} {path}")

    def _namespace(self, name: str) -> Response:
        if name not in self.namespaces:
            return error(404, "NotFound", f'namespaces "{name}" not found')
        return JSONResponse(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "status": {"phase": "Active"},
            }
        )

    async def _cluster(self, method: str, resource: str, name: str | None, request: Request) -> Response:
        if resource == "runtimeclasses":
            if name not in self.runtime_classes:
                return error(404, "NotFound", f'runtimeclasses.node.k8s.io "{name}" not found')
            return JSONResponse(
                {
                    "apiVersion": "node.k8s.io/v1",
                    "kind": "RuntimeClass",
                    "metadata": {"name": name},
                    "handler": name,
                }
            )
        if resource == "customresourcedefinitions":
            if name not in self.crds:
                return error(404, "NotFound", f'customresourcedefinitions "{name}" not found')
            spec = {
                "group": "x",
                "names": {"kind": "X", "plural": "xs"},
                "scope": "Namespaced",
                "versions": [],
            }
            return JSONResponse(
                {
                    "apiVersion": "apiextensions.k8s.io/v1",
                    "kind": "CustomResourceDefinition",
                    "metadata": {"name": name},
                    "spec": spec,
                }
            )
        if resource == "selfsubjectaccessreviews" and method == "POST":
            body = await request.json()
            attrs = body["spec"]["resourceAttributes"]
            what = attrs["resource"] + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
            return JSONResponse(
                {**body, "status": {"allowed": (attrs["verb"], what) not in self.denied}}, status_code=201
            )
        return error(404, "NotFound", f"{resource} {name}")

    async def _create(self, resource: str, namespace: str, body: Json) -> Response:
        problem = problems(body) if self.validate else None
        if problem is not None:
            self.invalid.append(problem)
            return error(422, "Invalid", problem)
        if namespace not in self.namespaces:
            return error(404, "NotFound", f'namespaces "{namespace}" not found')
        name = body["metadata"]["name"]
        if (resource, namespace, name) in self.objects:
            return error(409, "AlreadyExists", f'{resource} "{name}" already exists')
        if resource == "services":
            try:
                await self.services.open(namespace, body)  # the address is in the answer, as on a cluster
            except ServiceError as exc:
                self.invalid.append(str(exc))
                return error(exc.status, "Invalid" if exc.status == 422 else "InternalError", str(exc))
        obj = await self.put(resource, namespace, body)
        if resource == "pods":
            obj["status"] = {"phase": "Pending"}
            self.kubelet.start(obj, self.scenarios.popleft() if self.scenarios else self.default_scenario)
        elif resource == "deployments":
            await self._start_owned_pod(
                namespace, f"{name}-5d8f7", obj["spec"]["template"], f"deployment:{name}"
            )
        elif resource == "sandboxclaims":
            template = self.objects.get(("sandboxtemplates", namespace, obj["spec"]["warmPoolRef"]["name"]))
            if template is not None:
                pod_template = json.loads(json.dumps(template["spec"]["podTemplate"]))
                pod_template["metadata"]["labels"]["agents.x-k8s.io/claim-uid"] = obj["metadata"]["uid"]
                await self._start_owned_pod(namespace, f"{name}-sandbox", pod_template, f"claim:{name}")
        return JSONResponse(obj, status_code=201)

    async def _start_owned_pod(self, namespace: str, name: str, template: Json, owner: str) -> None:
        labels = {**template.get("metadata", {}).get("labels", {}), "fake/owner": owner}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": template["spec"],
        }
        pod = await self.put("pods", namespace, pod)
        pod["status"] = {"phase": "Pending"}
        self.kubelet.start(pod, self.scenarios.popleft() if self.scenarios else self.default_scenario)
