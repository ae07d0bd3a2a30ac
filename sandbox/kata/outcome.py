"""Read a pod's status: has it started, did it fail to start, and how did the run end.

Mapping to :class:`~sandbox.base.EndReason` (the same reasons as the local backends):

* pod ``reason: DeadlineExceeded`` (``activeDeadlineSeconds``) or the runner's ``@t`` -> ``timeout``
* container ``reason: OOMKilled`` or the runner's ``@m`` -> ``oom``
* pod ``reason: Evicted`` (scratch past its ``sizeLimit``, node pressure) -> ``killed``
* a program killed by a signal (the runner's negative ``@x``; else exit code 128 + n) -> ``killed``
* anything else -> ``exit`` with the program's exit code.

Start failures (:func:`start_problem`) are the cluster's fault, not the program's, and become
:class:`~sandbox.errors.SandboxStartError`: image pull errors, a container that cannot be created.
"""

from __future__ import annotations

import signal
from typing import Any

from sandbox.base import EndReason
from sandbox.kata.frames import RunFacts

__all__ = [
    "START_ERRORS",
    "container_state",
    "end_of",
    "has_started",
    "is_finished",
    "pod_reason",
    "start_problem",
]

Json = dict[str, Any]

START_ERRORS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "StartError",
        "ContainerCannotRun",
    }
)
_SIGNALS = {s.value for s in signal.Signals}


def container_state(pod: Json) -> Json:
    """The first container's ``state`` (``{}`` before the kubelet reports one)."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return dict(statuses[0].get("state") or {}) if statuses else {}


def pod_reason(pod: Json) -> str:
    """The pod's own ``status.reason`` (DeadlineExceeded, Evicted, ...), or ''."""
    return str(pod.get("status", {}).get("reason") or "")


def start_problem(pod: Json) -> str | None:
    """Why the pod cannot start (image pull error...), or None while it may still start."""
    state = container_state(pod)
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in START_ERRORS:
        return f"{waiting['reason']}: {waiting.get('message') or 'no message'}"
    terminated = state.get("terminated") or {}
    if terminated.get("reason") in START_ERRORS:
        return f"{terminated['reason']}: {terminated.get('message') or 'no message'}"
    return None


def scheduling_message(pod: Json) -> str:
    """The scheduler's complaint (``PodScheduled=False``), for a pod that never started."""
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason', 'Unschedulable')}: {condition.get('message', '')}"
    waiting = container_state(pod).get("waiting") or {}
    return str(waiting.get("reason") or pod.get("status", {}).get("phase") or "Pending")


def has_started(pod: Json) -> bool:
    """The container runs or ran (its log can be read), or the pod ended."""
    state = container_state(pod)
    return "running" in state or "terminated" in state or is_finished(pod)


def is_finished(pod: Json) -> bool:
    """The pod reached a terminal phase or its container terminated."""
    phase = pod.get("status", {}).get("phase")
    return phase in ("Succeeded", "Failed") or "terminated" in container_state(pod)


def end_of(pod: Json | None, facts: RunFacts, *, deleted_for_timeout: bool = False) -> tuple[int, EndReason]:
    """The run's exit code and end reason from the pod's last state and the runner's frames."""
    terminated = container_state(pod).get("terminated") or {} if pod is not None else {}
    reason = pod_reason(pod) if pod is not None else ""
    container_exit = terminated.get("exitCode")
    code = facts.exit_code
    if code is None:
        raw = int(container_exit) if container_exit is not None else -signal.SIGKILL
        code = -(raw - 128) if raw > 128 and (raw - 128) in _SIGNALS else raw
    if facts.timed_out or reason == "DeadlineExceeded" or deleted_for_timeout:
        return (code if code < 0 else -signal.SIGKILL), EndReason.TIMEOUT
    if terminated.get("reason") == "OOMKilled" or facts.oom:
        return (code if code < 0 else -signal.SIGKILL), EndReason.OOM
    if reason == "Evicted":
        return -signal.SIGKILL, EndReason.KILLED
    if code < 0:
        return code, EndReason.KILLED
    return code, EndReason.EXIT
