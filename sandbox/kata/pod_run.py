"""One run as a bare pod: ConfigMap + Pod, watch until it starts, follow its log, read how it ended.

API calls of a run that goes well: create ConfigMap, create Pod, one watch, one log stream, delete
Pod, delete ConfigMap (six requests; ``bench/kata_control_plane.py`` counts them). A run whose
files are too large for a ConfigMap (``uploader`` given) has no ConfigMap: its pod waits for the
runner and the job, which one ``exec`` writes into the scratch dir once the container runs (create
Pod, watch, exec, log, delete Pod: five requests, the exec carrying the files). Everything the
run created is deleted in a ``finally`` that is shielded from cancellation, so a client leaving a
stream early still removes its pod; what a crash leaves behind, the reaper removes by label.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp

from sandbox.base import RunRequest, RunResult
from sandbox.errors import SandboxStartError
from sandbox.kata.exec import PodExec, upload_payload
from sandbox.kata.frames import FrameReader
from sandbox.kata.job import Job
from sandbox.kata.kube import ApiException, KubeApi, is_missing
from sandbox.kata.manifests import run_configmap, run_pod
from sandbox.kata.outcome import (
    end_of,
    has_started,
    is_finished,
    pod_reason,
    scheduling_message,
    start_problem,
)
from sandbox.kata.settings import KataSettings
from sandbox.kata.watch import Json, PodWatcher, pod_log_lines
from sandbox.streaming import ChunkSink

__all__ = [
    "PodTarget",
    "check_runner",
    "delete_run_objects",
    "finish_shielded",
    "follow_log",
    "result_of",
    "run_pod_once",
    "to_json",
]

logger = logging.getLogger(__name__)

_FINISH_WAIT_S = 30.0  # after the runner's last frame, how long the container may take to report its end
_LOG_RETRY_S = 0.2


@dataclass(frozen=True)
class PodTarget:
    """Where one run's objects go."""

    namespace: str
    name: str
    labels: dict[str, str]
    image: str


async def finish_shielded(cleanup: Awaitable[None]) -> None:
    """Run ``cleanup`` to its end even when we are cancelled meanwhile (then re-raise the cancel)."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


def to_json(api: KubeApi, obj: Any) -> Json:
    """A client model (or dict) as the API's JSON dict."""
    return api.to_json(obj)


async def delete_run_objects(api: KubeApi, namespace: str, name: str, *, pod: bool, configmap: bool) -> None:
    """Delete a run's pod and ConfigMap (at once, no grace: the run is over)."""
    if pod:
        await api.delete(
            f"delete pod {namespace}/{name}",
            lambda: api.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0),
        )
    if configmap:
        await api.delete(
            f"delete ConfigMap {namespace}/{name}",
            lambda: api.core.delete_namespaced_config_map(name, namespace),
        )


async def follow_log(
    api: KubeApi, target: PodTarget, reader: FrameReader, watcher: PodWatcher, timeout_s: float
) -> bool:
    """Feed the pod's log to ``reader`` until the runner's last frame; False when ``timeout_s`` ran out.

    A stream that breaks is opened again and the lines already read are skipped (the log is replayed
    from its start), so a dropped connection loses nothing.
    """
    deadline = time.monotonic() + timeout_s
    skip = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        finished_before = is_finished(watcher.pod) or watcher.gone
        seen = 0
        try:
            async with asyncio.timeout(remaining):
                lines = pod_log_lines(
                    api, target.namespace, target.name, timeout_s=remaining + 5, complete_only=True
                )
                async with contextlib.aclosing(lines):
                    async for line in lines:
                        seen += 1
                        if seen <= skip:
                            continue
                        reader.feed(line)
                        if reader.facts.exit_code is not None or reader.facts.runner_error is not None:
                            return True
        except TimeoutError:
            return False
        except ApiException as exc:
            if is_missing(exc) or watcher.gone:
                return True
            logger.info("log of %s/%s: %s; trying again", target.namespace, target.name, exc.status)
        except aiohttp.ClientError as exc:
            logger.info("log of %s/%s broke (%r); resuming", target.namespace, target.name, exc)
        skip = max(skip, seen)
        if finished_before:
            return True  # the whole log of an ended container has been read
        await asyncio.sleep(_LOG_RETRY_S)


def result_of(
    pod: Json | None, reader: FrameReader, *, started: float, timed_out: bool, backend: str
) -> RunResult:
    """The run's result from the pod's last state and what the runner said."""
    stdout, stderr = reader.finish()
    facts = reader.facts
    exit_code, reason = end_of(pod, facts, deleted_for_timeout=timed_out)
    end = time.monotonic()
    boot = (facts.started_at - started) if facts.started_at is not None else end - started
    peak = facts.peak_memory_bytes
    return RunResult(
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=facts.truncated["stdout"],
        stderr_truncated=facts.truncated["stderr"],
        reason=reason,
        duration_s=round(end - started, 4),
        peak_memory_mb=round(peak / (1024 * 1024), 2) if peak is not None else None,
        boot_s=round(max(0.0, boot), 4),
        backend=backend,
    )


def check_runner(pod: Json | None, reader: FrameReader, timed_out: bool) -> None:
    """Refuse a result when the runner never ran the program (the image or the runner is at fault).

    Raises:
        SandboxStartError: the runner reported an error, or the container ended before the start frame.
    """
    facts = reader.facts
    if facts.runner_error is not None:
        raise SandboxStartError(f"the sandbox pod's runner failed: {facts.runner_error}")
    if facts.started or timed_out or (pod is not None and pod_reason(pod) in ("DeadlineExceeded", "Evicted")):
        return
    detail = facts.diagnostics.strip().splitlines()[-1:] or ["no output"]
    terminated = ((pod or {}).get("status", {}).get("containerStatuses") or [{}])[0].get("state", {})
    raise SandboxStartError(
        f"the sandbox pod ended before its program started ({terminated or 'no status'}; log: {detail[0]}); "
        "check that the library set's image has python3 at AGENTIC_SANDBOX_KATA_PYTHON_PATH"
    )


async def run_pod_once(
    api: KubeApi,
    settings: KataSettings,
    target: PodTarget,
    request: RunRequest,
    job: Job,
    runner: bytes,
    sink: ChunkSink | None,
    *,
    backend: str,
    uploader: PodExec | None = None,
) -> RunResult:
    """Run ``request`` in a fresh pod and return its result; delete everything afterwards.

    ``uploader``: send the runner and the job over exec instead of in a ConfigMap.

    Raises:
        SandboxStartError: the API refused an object, the image cannot be pulled, the pod was not
            scheduled within ``start_timeout_s``, the upload failed, or the runner did not run the
            program.
    """
    started = time.monotonic()
    ns, name = target.namespace, target.name
    pod_body = run_pod(
        name,
        ns,
        target.labels,
        settings,
        image=target.image,
        limits=request.limits,
        network=request.network,
        upload=uploader is not None,
    )
    made_configmap = made_pod = False
    watcher: PodWatcher | None = None
    try:
        if uploader is None:
            configmap_body = run_configmap(name, ns, target.labels, job.configmap_data(runner))
            await api.create(
                f"create ConfigMap {ns}/{name}",
                lambda: api.core.create_namespaced_config_map(ns, configmap_body),  # type: ignore[arg-type]
                lambda: api.core.read_namespaced_config_map(name, ns),
            )
            made_configmap = True
        created = await api.create(
            f"create pod {ns}/{name}",
            lambda: api.core.create_namespaced_pod(ns, pod_body),  # type: ignore[arg-type]
            lambda: api.core.read_namespaced_pod(name, ns),
        )
        made_pod = True
        watcher = PodWatcher(api, ns, name, to_json(api, created))
        watcher.start()
        ready = await watcher.wait_for(
            lambda p: has_started(p) or start_problem(p) is not None, settings.start_timeout_s
        )
        if (problem := start_problem(watcher.pod)) is not None:
            raise SandboxStartError(f"sandbox pod {ns}/{name} cannot start: {problem}")
        if watcher.gone:
            raise SandboxStartError(f"sandbox pod {ns}/{name} was deleted before its program started")
        if not ready:
            raise SandboxStartError(
                f"sandbox pod {ns}/{name} did not start within {settings.start_timeout_s:.0f} s "
                f"({scheduling_message(watcher.pod)})"
            )
        if uploader is not None and not is_finished(watcher.pod):
            await upload_payload(uploader, settings, ns, name, job.payload(runner))
        reader = FrameReader(request.limits.output_bytes, sink)
        budget = request.limits.wall_seconds + settings.deadline_grace_s + 15
        timed_out = not await follow_log(api, target, reader, watcher, budget)
        if not timed_out:
            await watcher.wait_for(is_finished, _FINISH_WAIT_S)
        last = None if watcher.gone and not is_finished(watcher.pod) else watcher.pod
        check_runner(last, reader, timed_out)
        return result_of(last, reader, started=started, timed_out=timed_out, backend=backend)
    finally:
        if watcher is not None:
            await watcher.stop()
        await finish_shielded(delete_run_objects(api, ns, name, pod=made_pod, configmap=made_configmap))
