"""The fake API server's kubelet: plays a pod's phases, or really runs its container in bubblewrap.

Two modes per pod (a :class:`Scenario` queued by the test, default ``exec``):

* ``exec``: the container's ``command`` runs for real, in bubblewrap, with the pod's volumes
  (``emptyDir`` -> a tmpfs of its ``sizeLimit``, ``configMap`` -> its data read-only), a read-only
  root made of the host's ``/usr`` and ``/etc`` (the "image"), its own pid / net / ipc namespaces
  and the pod's ``runAsUser``; its ``env`` (plain values, ``status.podIP``) with ``$(VAR)``
  expanded in its command; a pod IP, its ports and its egress as :mod:`fake_network` wires them.
  Its stdout and stderr are the container log; ``activeDeadlineSeconds``
  is enforced (pod ``Failed`` / ``DeadlineExceeded``), as the kubelet does. A running container is
  ``Ready`` at once, or, with a ``readinessProbe`` (the relay port of apps and browsers), once the
  in-pod runner wrote its start frame: its relay listens by then (a TCP probe of the fake's pod IP
  would pass too early, as the host side of :mod:`fake_network` always accepts).
* ``script``: the phases a test asks for (image pull errors, unschedulable, OOMKilled, a given log
  and exit code) without running anything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.sandbox.kata.fake_network import FakeNetwork, PodNetwork

Json = dict[str, Any]
BWRAP = "/usr/bin/bwrap"
NSENTER = "/usr/bin/nsenter"
CONTAINER_ENV = {"PATH": "/usr/bin:/bin"}  # a container starts from its image's env, never the host's


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quantity_bytes(text: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


class Signal:
    """Wakes every waiter on each change; no lock is held across an await (cancel-safe)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``condition()`` holds (False on timeout)."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while not condition():
            event = self._event  # taken right after the check: no change can slip in between
            remaining = None if end is None else end - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return condition()
        return True


@dataclass
class Scenario:
    """How the next pod behaves."""

    mode: str = "exec"  # "exec" or "script"
    waiting: list[tuple[str, str]] = field(default_factory=list)  # container waiting reasons, in order
    unschedulable: bool = False
    log: bytes = b""  # script: the container log
    run_s: float = 0.0  # script: how long the container runs
    hold: bool = False  # script: never end (until deleted)
    exit_code: int = 0
    container_reason: str | None = None  # script: terminated reason (default Completed / Error)
    pod_reason: str | None = None  # script: pod status.reason (DeadlineExceeded, Evicted)
    await_exec: bool = False  # script: play the log only after an exec ended (a runner waiting for files)


@dataclass
class PodRuntime:
    """One pod's container as the fake kubelet runs it."""

    namespace: str
    name: str
    log: bytearray = field(default_factory=bytearray)
    started: bool = False
    done: bool = False
    changed: Signal = field(default_factory=Signal)
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    workdir: Path | None = None
    network: PodNetwork | None = None
    execs: int = 0  # execs into this container that have ended
    ready: bool = False  # the Ready condition (see the module docstring)

    async def append(self, data: bytes) -> None:
        self.log += data
        self.changed.fire()

    async def finish(self) -> None:
        self.done = True
        self.changed.fire()


def bwrap_argv(
    pod: Json,
    container: Json,
    volumes_dir: Path,
    configmaps: Callable[[str], Json | None],
    network: PodNetwork | None = None,
) -> list[str]:
    """The bubblewrap command that runs ``container`` of ``pod`` as a container would run.

    ``network``: the pod's wiring (:mod:`fake_network`): its binds, and the forwarder that execs
    the container's command.
    """
    spec = pod["spec"]
    security = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = security.get("runAsUser", 65534), security.get("runAsGroup", 65534)
    argv = [BWRAP, "--tmpfs", "/", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path(f"/usr/{link}").exists():
            argv += ["--symlink", f"usr/{link}", f"/{link}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
    env = container_env(container, network.ip if network is not None else None)
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-user"]
    argv += ["--uid", str(uid), "--gid", str(gid), "--die-with-parent", "--new-session"]
    if network is not None:
        argv += network.bwrap_args
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = quantity_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
            argv += ["--size", str(size), "--perms", "0777", "--tmpfs", mount["mountPath"]]
        elif "configMap" in volume:
            data = configmaps(volume["configMap"]["name"]) or {}
            target = volumes_dir / mount["name"]
            target.mkdir(parents=True, exist_ok=True)
            for key, value in (data.get("binaryData") or {}).items():
                (target / key).write_bytes(base64.b64decode(value))
            for key, value in (data.get("data") or {}).items():
                (target / key).write_text(value)
            os.chmod(volumes_dir, 0o755)
            for path in [target, *target.iterdir()]:
                os.chmod(path, 0o755 if path.is_dir() else 0o444)
            argv += ["--ro-bind", str(target), mount["mountPath"]]
    if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        argv += ["--remount-ro", "/"]
    argv += ["--chdir", container.get("workingDir", "/")]
    prefix = network.prefix if network is not None else []
    return [*argv, "--", *prefix, *expand(container["command"], env), *expand(container.get("args", []), env)]


def container_env(container: Json, pod_ip: str | None) -> dict[str, str]:
    """The container's ``env``: plain values and the downward API's ``status.podIP``."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif (item.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = pod_ip or ""
    return env


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """``$(NAME)`` in a command replaced by the container's variable, as the kubelet does."""
    out = []
    for arg in args:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        out.append(arg)
    return out


class FakeKubelet:
    """Runs pods for the fake API server; ``update(ns, name, status_fn)`` writes their status back."""

    def __init__(
        self,
        update: Callable[[str, str, Callable[[Json], None]], Awaitable[None]],
        configmaps: Callable[[str, str], Json | None],
    ) -> None:
        self.update = update
        self.configmaps = configmaps
        self.runtimes: dict[tuple[str, str], PodRuntime] = {}
        self.network = FakeNetwork()
        self.root = Path(tempfile.mkdtemp(prefix=f"agentic-fakekubelet-{os.getpid()}-"))
        self.root.chmod(0o755)

    def start(self, pod: Json, scenario: Scenario) -> PodRuntime:
        meta = pod["metadata"]
        runtime = PodRuntime(namespace=meta["namespace"], name=meta["name"])
        self.runtimes[(runtime.namespace, runtime.name)] = runtime
        runtime.task = asyncio.create_task(self._run(pod, scenario, runtime))
        return runtime

    async def stop(self, namespace: str, name: str) -> None:
        runtime = self.runtimes.pop((namespace, name), None)
        if runtime is None:
            return
        if runtime.process is not None and runtime.process.returncode is None:
            # The container's pid 1 first: its pid namespace dies with it, daemons included.
            inner = _children(runtime.process.pid)
            for pid in [*inner[:1], runtime.process.pid]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if runtime.task is not None:
            runtime.task.cancel()
            with contextlib.suppress(BaseException):
                await runtime.task
        if runtime.process is not None and runtime.process.returncode is None:
            await runtime.process.wait()
        await runtime.finish()
        if runtime.network is not None:
            await runtime.network.close()
        if runtime.workdir is not None:
            shutil.rmtree(runtime.workdir, ignore_errors=True)

    async def close(self) -> None:
        for namespace, name in list(self.runtimes):
            await self.stop(namespace, name)
        shutil.rmtree(self.root, ignore_errors=True)

    async def _set(
        self, runtime: PodRuntime, *, phase: str, state: Json, reason: str | None = None, **extra: Any
    ) -> None:
        def change(pod: Json) -> None:
            status = pod.setdefault("status", {})
            status["phase"] = phase
            ready = "running" in state and runtime.ready
            status["conditions"] = extra.get("conditions") or [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                {"type": "Ready", "status": str(ready), "lastTransitionTime": now()},
            ]
            if reason:
                status["reason"] = reason
                status["message"] = f"pod {reason}"
            if runtime.network is not None and phase == "Running":
                status["podIP"] = runtime.network.ip
                status["podIPs"] = [{"ip": runtime.network.ip}]
            status["containerStatuses"] = [
                {
                    "name": pod["spec"]["containers"][0]["name"],
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": ready,
                    "restartCount": 0,
                    "state": state,
                }
            ]

        await self.update(runtime.namespace, runtime.name, change)

    async def _run(self, pod: Json, scenario: Scenario, runtime: PodRuntime) -> None:
        await asyncio.sleep(0)  # the API answers the create first, as a real kubelet comes later
        if scenario.unschedulable:
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory.",
                "lastTransitionTime": now(),
            }
            await self._set(runtime, phase="Pending", state={}, conditions=[condition])
            return
        await self._set(runtime, phase="Pending", state={"waiting": {"reason": "ContainerCreating"}})
        if scenario.waiting:
            for reason, message in scenario.waiting:
                await asyncio.sleep(0.02)
                await self._set(
                    runtime, phase="Pending", state={"waiting": {"reason": reason, "message": message}}
                )
            return
        if scenario.mode == "exec":
            try:
                await self._exec(pod, runtime)
            except OSError as exc:  # the fake could not wire or start the container: say so
                if runtime.started:
                    raise
                waiting = {"reason": "CreateContainerError", "message": f"fake kubelet: {exc}"}
                await self._set(runtime, phase="Pending", state={"waiting": waiting})
        else:
            await self._script(pod, scenario, runtime)

    async def _terminate(
        self, runtime: PodRuntime, code: int, reason: str, pod_reason: str | None = None
    ) -> None:
        state = {"terminated": {"exitCode": code, "reason": reason, "startedAt": now(), "finishedAt": now()}}
        phase = "Succeeded" if code == 0 and pod_reason is None else "Failed"
        await self._set(runtime, phase=phase, state=state, reason=pod_reason)
        await runtime.finish()

    async def _ready_once_started(self, runtime: PodRuntime) -> None:
        """A container with a readiness probe turns ready at the runner's start frame (module docstring)."""
        if not runtime.ready and not runtime.done and b"@s" in runtime.log:
            runtime.ready = True
            await self._set(runtime, phase="Running", state={"running": {"startedAt": now()}})

    async def _script(self, pod: Json, scenario: Scenario, runtime: PodRuntime) -> None:
        runtime.started = True
        runtime.ready = "readinessProbe" not in pod["spec"]["containers"][0]
        await self._set(runtime, phase="Running", state={"running": {"startedAt": now()}})
        if scenario.await_exec:
            await runtime.changed.until(lambda: runtime.execs > 0)
        await runtime.append(scenario.log)
        await self._ready_once_started(runtime)
        if scenario.hold:
            return
        await asyncio.sleep(scenario.run_s)
        reason = scenario.container_reason or ("Completed" if scenario.exit_code == 0 else "Error")
        await self._terminate(runtime, scenario.exit_code, reason, scenario.pod_reason)

    async def _exec(self, pod: Json, runtime: PodRuntime) -> None:
        container = pod["spec"]["containers"][0]
        runtime.workdir = Path(tempfile.mkdtemp(dir=self.root))
        runtime.network = await self.network.attach(pod, container, runtime.workdir)
        argv = bwrap_argv(
            pod,
            container,
            runtime.workdir,
            lambda name: self.configmaps(runtime.namespace, name),
            runtime.network,
        )
        runtime.process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=CONTAINER_ENV,
        )
        runtime.started = True
        runtime.ready = "readinessProbe" not in container
        await self._set(runtime, phase="Running", state={"running": {"startedAt": now()}})
        deadline = pod["spec"].get("activeDeadlineSeconds")
        assert runtime.process.stdout is not None

        async def pump() -> None:
            assert runtime.process is not None and runtime.process.stdout is not None
            while data := await runtime.process.stdout.read(65536):
                await runtime.append(data)
                await self._ready_once_started(runtime)

        pumping = asyncio.create_task(pump())
        try:
            await asyncio.wait_for(asyncio.shield(pumping), timeout=deadline)
        except TimeoutError:
            runtime.process.kill()
            await runtime.process.wait()
            pumping.cancel()
            with contextlib.suppress(BaseException):
                await pumping
            await self._terminate(runtime, 137, "Error", "DeadlineExceeded")
            return
        code = await runtime.process.wait()
        code = code if code >= 0 else 128 - code
        await self._terminate(runtime, code, "Completed" if code == 0 else "Error")

    async def exec_process(self, pod: Json, command: list[str]) -> asyncio.subprocess.Process | None:
        """A process for ``kubectl exec``: ``command`` inside the running container (None: not running).

        As a real runtime does (``runc exec``): it joins the container's namespaces (user, mount,
        pid, net, ipc, uts) with ``nsenter``, as the pod's ``runAsUser``, so it sees and writes the
        container's own volumes. Its own process group, so :func:`kill_exec` ends the whole exec.
        """
        meta = pod["metadata"]
        runtime = self.runtimes.get((meta["namespace"], meta["name"]))
        if runtime is not None and runtime.process is None and runtime.started and not runtime.done:
            # A scripted container has no process to join: it takes a length-prefixed stdin and drops it.
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                "-c",
                _SCRIPTED_EXEC,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        if runtime is None or runtime.process is None or runtime.process.returncode is not None:
            return None
        target = container_pid(runtime.process.pid)
        if target is None:
            return None
        container = pod["spec"]["containers"][0]
        security = {**pod["spec"].get("securityContext", {}), **container.get("securityContext", {})}
        uid, gid = security.get("runAsUser", 65534), security.get("runAsGroup", 65534)
        argv = [NSENTER, "-t", str(target), "-U", "-m", "-p", "-n", "-i", "-u", "-r", "-w"]
        argv += ["-S", str(uid), "-G", str(gid), "--", *command]
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=CONTAINER_ENV,
            start_new_session=True,
        )

    def exec_ended(self, namespace: str, name: str) -> None:
        """Count an exec that ended (a scripted pod waiting for its files goes on)."""
        runtime = self.runtimes.get((namespace, name))
        if runtime is not None:
            runtime.execs += 1
            runtime.changed.fire()


_SCRIPTED_EXEC = (
    "import sys\nn = int(sys.stdin.buffer.readline() or 0)\n"
    "while n > 0:\n    n -= len(sys.stdin.buffer.read(min(n, 1 << 20)) or sys.exit(1))\n"
)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def container_pid(bwrap_pid: int) -> int | None:
    """A process inside the container: bwrap's child (its pid 1) or that one's first child."""
    first = _children(bwrap_pid)
    if not first:
        return None
    inner = _children(first[0])
    return inner[0] if inner else first[0]


def kill_exec(process: asyncio.subprocess.Process) -> None:
    """SIGKILL an exec and what it started (nsenter forks the command into the pod's pid namespace)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
