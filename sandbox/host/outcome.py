"""How a finished sandboxed process becomes a :class:`~sandbox.base.RunResult` (both host backends).

Why one function: bubblewrap and runsc report a run the same way (a child's exit status, the run's
cgroup counters, whether a deadline or the CPU watchdog fired), and the reasons must mean the same on
both: ``timeout`` before ``oom`` before ``killed``, a signal death as ``-signal``.
"""

from __future__ import annotations

import signal

from sandbox.base import EndReason, RunResult
from sandbox.host.cgroup import CgroupUsage
from sandbox.host.process import ProcessOutcome

__all__ = ["OOM_MARKERS", "run_result", "signal_exit_code"]

OOM_MARKERS = ("MemoryError", "JavaScript heap out of memory", "out of memory")
"""What runtimes print when an rlimit (not a cgroup) ended them for memory."""
_SIGNALS = {s.value for s in signal.Signals}


def signal_exit_code(code: int) -> int:
    """Map ``128 + n`` (how bwrap and runsc report a signal death, like a shell) back to ``-n``.

    An exit code above 128 that matches a signal number is therefore read as that signal.
    """
    return -(code - 128) if code > 128 and (code - 128) in _SIGNALS else code


def run_result(
    outcome: ProcessOutcome,
    usage: CgroupUsage | None,
    *,
    backend: str,
    cpu_exceeded: bool = False,
    oom_markers: tuple[str, ...] = OOM_MARKERS,
    boot_s: float = 0.0,
) -> RunResult:
    """The run's result from its process outcome and cgroup counters (``usage`` None: no cgroups).

    Args:
        outcome: What the child process did.
        usage: The run's cgroup counters, or None when limits were rlimits.
        backend: The backend's name, reported in the result.
        cpu_exceeded: The CPU-seconds watchdog killed the run.
        oom_markers: Without cgroups, stderr text that means the runtime ran out of memory.
        boot_s: The backend's start-up cost included in the duration.
    """
    stderr = outcome.stderr.decode("utf-8", "replace")
    code = signal_exit_code(outcome.exit_code)
    if outcome.timed_out:
        reason = EndReason.TIMEOUT
    elif usage is not None and usage.oom:
        reason = EndReason.OOM
    elif usage is None and code != 0 and any(marker in stderr for marker in oom_markers):
        reason = EndReason.OOM  # rlimit fallback: no OOM counter, the runtime says it
    elif cpu_exceeded:
        reason = EndReason.KILLED
        code = code if code < 0 else -signal.SIGKILL
    elif code < 0:
        reason = EndReason.KILLED
    else:
        reason = EndReason.EXIT
    return RunResult(
        exit_code=code,
        stdout=outcome.stdout.decode("utf-8", "replace"),
        stderr=stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        reason=reason,
        duration_s=outcome.duration_s,
        peak_memory_mb=usage.peak_memory_mb if usage is not None else None,
        boot_s=min(boot_s, outcome.duration_s),
        backend=backend,
    )
