"""Runs on warm pods through kubernetes-sigs/agent-sandbox: SandboxTemplate, SandboxWarmPool, SandboxClaim.

Where the cluster has the agent-sandbox CRDs (``use_agent_sandbox``), the backend keeps one
``SandboxWarmPool`` per namespace and library set, of ``warm_pool_size`` idle hardened pods
(``SandboxTemplate``: the same pod spec as a bare run, sized by ``warm_pool_*``, all traffic
denied by the controller's own NetworkPolicy). A run then:

1. creates a ``SandboxClaim`` on the pool (labels of the run, ``shutdownTime`` = now + pod TTL,
   ``shutdownPolicy: Delete``: the controller deletes a forgotten claim by itself);
2. waits for the claim's ``Ready`` condition and finds the adopted pod by the controller's
   ``agents.x-k8s.io/claim-uid`` label;
3. ``exec``s the runner into it (the pod was started before the run existed, so the files cannot
   be in a volume): the runner's source and the job go on stdin, the framed output comes back on
   stdout, exactly as a bare pod's log;
4. deletes the claim (the Sandbox and its pod go with it): each warm pod serves exactly one run.

Runs with network, or whose limits exceed the pool's pods, still get a bare pod.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import time
from typing import Any

import aiohttp

from sandbox.base import RunRequest, RunResult
from sandbox.errors import SandboxStartError
from sandbox.kata.exec import PodExec
from sandbox.kata.frames import FrameReader
from sandbox.kata.job import Job
from sandbox.kata.kube import ApiException, KubeApi
from sandbox.kata.manifests import (
    AGENT_SANDBOX_GROUP,
    AGENT_SANDBOX_VERSION,
    exec_command,
    sandbox_claim,
    sandbox_template,
    sandbox_warm_pool,
)
from sandbox.kata.naming import MANAGED_BY, dns_label
from sandbox.kata.pod_run import PodTarget, check_runner, finish_shielded, result_of, to_json
from sandbox.kata.settings import KataSettings
from sandbox.streaming import ChunkSink

__all__ = ["CLAIM_UID_LABEL", "WarmPools", "fits_pool"]

logger = logging.getLogger(__name__)

Json = dict[str, Any]
CLAIM_UID_LABEL = "agents.x-k8s.io/claim-uid"  # set on the adopted pod by the claim controller
_POLL_S = 0.2


def fits_pool(request: RunRequest, settings: KataSettings) -> bool:
    """True when a warm pod can hold this run (no network, limits within the pool's pods)."""
    limits = request.limits
    return (
        not request.network
        and limits.memory_mb <= settings.warm_pool_memory_mb
        and limits.cpus <= settings.warm_pool_cpus
        and limits.disk_mb <= settings.warm_pool_disk_mb
    )


def _claim_ready(claim: Json) -> bool:
    for condition in claim.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return True
    return False


class WarmPools:
    """The warm pools this process has made sure of, and runs on them."""

    def __init__(self, api: KubeApi, settings: KataSettings, pod_exec: PodExec) -> None:
        self.api = api
        self.settings = settings
        self.pod_exec = pod_exec
        self._ensured: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    def pool_name(self, library_set: str, image: str) -> str:
        """One pool per library set and pod shape (a changed image or size makes a new pool)."""
        s = self.settings
        parts = (
            image,
            s.runtime_class,
            s.warm_pool_memory_mb,
            s.warm_pool_cpus,
            s.warm_pool_disk_mb,
            s.python_path,
        )
        shape = "|".join(map(str, parts))
        return dns_label(
            f"agentic-{library_set}-{hashlib.sha256(shape.encode()).hexdigest()[:10]}", max_len=60
        )

    async def _create_or_keep(self, action: str, plural: str, namespace: str, body: Json) -> None:
        group, version = AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION
        try:
            await self.api.call(
                action,
                lambda: self.api.custom.create_namespaced_custom_object(
                    group, version, namespace, plural, body
                ),
                retry=False,
            )
        except SandboxStartError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, ApiException) and cause.status == 409):  # 409: made before, keep it
                raise

    async def ensure(self, namespace: str, library_set: str, image: str) -> str:
        """Create the pool's SandboxTemplate and SandboxWarmPool unless they exist; return the pool name."""
        name = self.pool_name(library_set, image)
        async with self._lock:
            if (namespace, name) in self._ensured:
                return name
            labels = {
                MANAGED_BY[0]: MANAGED_BY[1],
                "agentic.dev/role": "warm-pool",
                "agentic.dev/library-set": library_set,
            }
            template = sandbox_template(name, namespace, labels, self.settings, image)
            pool = sandbox_warm_pool(name, namespace, labels, self.settings, name)
            await self._create_or_keep(
                f"create SandboxTemplate {namespace}/{name}", "sandboxtemplates", namespace, template
            )
            await self._create_or_keep(
                f"create SandboxWarmPool {namespace}/{name}", "sandboxwarmpools", namespace, pool
            )
            self._ensured.add((namespace, name))
        return name

    async def _wait_for_pod(self, namespace: str, claim_name: str) -> Json:
        """Poll the claim until Ready, then return its adopted pod."""
        group, version = AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION
        deadline = time.monotonic() + self.settings.start_timeout_s
        claim: Json = {}
        while time.monotonic() < deadline:
            read = await self.api.call(
                f"read SandboxClaim {namespace}/{claim_name}",
                lambda: self.api.custom.get_namespaced_custom_object(
                    group, version, namespace, "sandboxclaims", claim_name
                ),
            )
            claim = read if isinstance(read, dict) else {}
            uid = str(claim.get("metadata", {}).get("uid") or "")
            if _claim_ready(claim) and uid:
                pods = await self.api.call(
                    f"find the pod of SandboxClaim {namespace}/{claim_name}",
                    lambda uid=uid: self.api.core.list_namespaced_pod(  # type: ignore[misc]
                        namespace, label_selector=f"{CLAIM_UID_LABEL}={uid}"
                    ),
                )
                if pods.items:
                    return to_json(self.api, pods.items[0])
            await asyncio.sleep(_POLL_S)
        conditions = claim.get("status", {}).get("conditions") or []
        raise SandboxStartError(
            f"SandboxClaim {namespace}/{claim_name} got no ready pod within "
            f"{self.settings.start_timeout_s:.0f} s "
            f"(conditions: {json.dumps(conditions)[:300]}); is the warm pool's controller running?"
        )

    async def _exec(self, namespace: str, pod: str, payload: bytes, reader: FrameReader) -> str:
        """Exec the runner in ``pod``: ``payload`` on stdin, stdout into ``reader``; return the status."""
        pending = bytearray()

        def stdout(body: bytes) -> None:
            pending.extend(body)
            *lines, rest = bytes(pending).split(b"\n")
            pending[:] = rest
            for line in lines:
                reader.feed(line)

        def stderr(body: bytes) -> None:
            for line in body.splitlines():
                reader.feed(line)  # not frames: kept as diagnostics

        status = await self.pod_exec.run(
            namespace, pod, exec_command(self.settings), payload, on_stdout=stdout, on_stderr=stderr
        )
        if pending:
            reader.feed(bytes(pending))
        return status.message if not status.ok else ""

    async def run_claimed(
        self,
        target: PodTarget,
        request: RunRequest,
        job: Job,
        runner: bytes,
        sink: ChunkSink | None,
        *,
        library_set: str,
        backend: str,
    ) -> RunResult:
        """Run ``request`` on a pod claimed from the library set's warm pool; delete the claim after."""
        started = time.monotonic()
        ns, name = target.namespace, target.name
        pool = await self.ensure(ns, library_set, target.image)
        shutdown = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.settings.pod_ttl_s)
        body = sandbox_claim(
            name, ns, target.labels, pool=pool, shutdown_time=shutdown.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        group, version = AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION
        await self.api.create(
            f"create SandboxClaim {ns}/{name}",
            lambda: self.api.custom.create_namespaced_custom_object(
                group, version, ns, "sandboxclaims", body
            ),
            lambda: self.api.custom.get_namespaced_custom_object(group, version, ns, "sandboxclaims", name),
        )
        try:
            pod = await self._wait_for_pod(ns, name)
            pod_name = str(pod["metadata"]["name"])
            reader = FrameReader(request.limits.output_bytes, sink)
            payload = job.payload(runner)
            budget = request.limits.wall_seconds + self.settings.deadline_grace_s + 15
            timed_out = False
            status = ""
            try:
                status = await asyncio.wait_for(self._exec(ns, pod_name, payload, reader), budget)
            except TimeoutError:
                timed_out = True
            except (ApiException, aiohttp.ClientError) as exc:
                if reader.facts.exit_code is None:
                    logger.info("exec into %s/%s broke: %r", ns, pod_name, exc)
            last: Json | None = pod
            if reader.facts.exit_code is None and not timed_out:  # killed mid-run: OOM? read the pod
                try:
                    last = to_json(self.api, await self.api.core.read_namespaced_pod(pod_name, ns))
                except ApiException:
                    last = None
                if status and not reader.facts.started:
                    reader.facts.diagnostics += f"exec status: {status}\n"
            check_runner(last, reader, timed_out)
            return result_of(last, reader, started=started, timed_out=timed_out, backend=backend)
        finally:
            await finish_shielded(self._delete_claim(ns, name))

    async def _delete_claim(self, namespace: str, name: str) -> None:
        group, version = AGENT_SANDBOX_GROUP, AGENT_SANDBOX_VERSION
        await self.api.delete(
            f"delete SandboxClaim {namespace}/{name}",
            lambda: self.api.custom.delete_namespaced_custom_object(
                group, version, namespace, "sandboxclaims", name, propagation_policy="Foreground"
            ),
        )
