"""The state a fake Unikraft Cloud plays back: instances, their lifecycle, and commands inside them.

What is real and what is played: an instance's commands are real host processes (so output,
exit codes, stdin, signals, timing and memory are the program's own), run in a temp dir that stands
for the instance's filesystem. The platform's part is played: boot (delay, reported boot time),
states (starting, running, standby, stopped, deleted), an image missing from the registry (the
instance stops with the platform's "image pull failed" code), running out of memory (a process
whose resident memory passes the instance's ``memory_mb`` crashes the whole instance with the
kernel's ENOMEM stop code, as a unikernel does), quotas and scale-to-zero.

Everything here runs on the fake server's own event loop (its thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

# Stop codes as the platform reports them (see unikraft_cloud.resources.stop).
STOP_KERNEL = 1
STOP_APP_EXIT = 3
STOP_PLATFORM = 4
STOP_FORCED_USER = 16 | 8 | 4
STOP_USER_COMPLETE = 8 | 4 | 2 | 1
PLATFORM_IMAGE_PULL_FAILED = 1
KERNEL_OOM = (12 << 16) | 4  # errno ENOMEM, reason PGFAULT
MEMORY_POLL_S = 0.01


def parse_image(ref: str) -> tuple[str, str]:
    """``[host/][ns/]name[:tag]`` -> (``ns/name``, tag), as the SDK and CLI read a reference."""
    rest = ref.split("://", 1)[-1]
    head, _, name = rest.rpartition("/")
    name, _, tag = name.partition(":")
    parts = [p for p in head.split("/") if p]
    if parts and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return "/".join([*(parts or ["official"]), name]), tag or "latest"


@dataclass
class FakeCommand:
    """A program started through the sandbox plugin: a host process with its output in files."""

    uuid: str
    cmdline: Any
    cwd: str | None
    env: dict[str, str] | None
    out_path: Path
    err_path: Path
    proc: asyncio.subprocess.Process | None = None
    exitcode: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def available(self, stream: str) -> int:
        path = self.out_path if stream == "stdout" else self.err_path
        return path.stat().st_size if path.exists() else 0

    def read(self, stream: str, offset: int, limit: int | None) -> bytes:
        path = self.out_path if stream == "stdout" else self.err_path
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(-1 if limit is None else limit)


@dataclass
class FakeInstance:
    """One instance and everything the platform reports about it."""

    uuid: str
    name: str
    image: str
    memory_mb: int
    vcpus: int
    tags: list[str]
    root: Path
    spec: dict[str, Any]
    state: str = "stopped"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    boot_time_us: int | None = None
    stop_reason: int | None = None
    stop_code: int | None = None
    fqdn: str | None = None
    destination_port: int | None = None
    commands: dict[str, FakeCommand] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_activity: float = field(default_factory=time.monotonic)
    woken: int = 0  # times scale-to-zero woke it
    plugin_requests: int = 0
    boot_task: asyncio.Task[None] | None = None

    def set_state(self, state: str) -> None:
        self.state = state
        self.changed.set()
        self.changed = asyncio.Event()

    def host_path(self, path: str) -> Path:
        """Where a path inside the instance lives on the host (inside ``root``)."""
        pure = PurePosixPath("/") / path
        parts = [p for p in pure.parts[1:] if p not in ("", ".", "..")]
        return self.root.joinpath(*parts)


class FakeCloudState:
    """Instances, registry, quotas and played-back behaviours of one fake Unikraft Cloud."""

    def __init__(self, root: Path, *, metro: str = "fake0") -> None:
        self.root = root
        self.metro = metro
        self.registry: dict[str, set[str]] = {}
        self.instances: dict[str, FakeInstance] = {}
        self.boot_delay_s = 0.0
        self.boot_time_us = 1234  # what the API reports (the played boot, not our wall time)
        self.quota_live_memory_mb: int | None = None
        self.quota_instances: int | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.created_specs: list[dict[str, Any]] = []  # every create body, as parsed

    # --- registry and quotas ------------------------------------------------------------------

    def push_image(self, ref: str) -> None:
        repo, tag = parse_image(ref)
        self.registry.setdefault(repo, set()).add(tag)

    def has_image(self, ref: str) -> bool:
        repo, tag = parse_image(ref)
        return tag in self.registry.get(repo, set())

    def live_memory_mb(self) -> int:
        return sum(i.memory_mb for i in self.instances.values() if i.state not in ("stopped", "deleted"))

    def quota_problem(self, memory_mb: int, *, new_instance: bool) -> str | None:
        if new_instance and self.quota_instances is not None and len(self.instances) >= self.quota_instances:
            return f"Instance quota exceeded ({len(self.instances)} of {self.quota_instances})"
        hard = self.quota_live_memory_mb
        if hard is not None and self.live_memory_mb() + memory_mb > hard:
            return f"Live memory quota exceeded ({self.live_memory_mb()} + {memory_mb} MB of {hard} MB)"
        return None

    # --- lifecycle ----------------------------------------------------------------------------

    def create(self, spec: dict[str, Any]) -> FakeInstance:
        self.created_specs.append(spec)
        uid = str(uuidlib.uuid4())
        name = spec.get("name") or f"instance-{secrets.token_hex(4)}"
        root = self.root / uid
        root.mkdir(parents=True)
        instance = FakeInstance(
            uuid=uid,
            name=name,
            image=spec["image"] if isinstance(spec.get("image"), str) else spec["image"]["url"],
            memory_mb=spec.get("memory_mb") or 128,
            vcpus=spec.get("vcpus") or 1,
            tags=list(spec.get("tags") or []),
            root=root,
            spec=spec,
        )
        group = spec.get("service_group")
        if group:
            label = (group.get("domains") or [{"name": secrets.token_hex(8)}])[0]["name"]
            instance.fqdn = f"{label}.{self.metro}.unikraft.app"
            instance.destination_port = group["services"][0].get("destination_port")
        self.instances[uid] = instance
        return instance

    def find(self, uid: str | None, name: str | None) -> FakeInstance | None:
        for instance in self.instances.values():
            if (uid is not None and instance.uuid == uid) or (name is not None and instance.name == name):
                return instance
        return None

    def start(self, instance: FakeInstance) -> None:
        if instance.state in ("running", "starting"):
            return
        instance.set_state("starting")
        instance.stop_reason = instance.stop_code = None
        instance.boot_task = asyncio.ensure_future(self._boot(instance))

    async def _boot(self, instance: FakeInstance) -> None:
        await asyncio.sleep(self.boot_delay_s)
        if instance.state != "starting":
            return
        if not self.has_image(instance.image):
            instance.stop_reason, instance.stop_code = STOP_PLATFORM, PLATFORM_IMAGE_PULL_FAILED
            instance.stopped_at = datetime.now(UTC)
            instance.set_state("stopped")
            return
        instance.started_at = datetime.now(UTC)
        instance.boot_time_us = self.boot_time_us
        instance.last_activity = time.monotonic()
        instance.set_state("running")

    async def wait_state(self, instance: FakeInstance, states: tuple[str, ...], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while instance.state not in states:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(instance.changed.wait(), remaining)
        return True

    async def stop(self, instance: FakeInstance, *, reason: int, code: int | None = None) -> None:
        await self._kill_all(instance)
        instance.stop_reason, instance.stop_code = reason, code
        instance.stopped_at = datetime.now(UTC)
        instance.set_state("stopped")

    async def delete(self, instance: FakeInstance) -> None:
        await self._kill_all(instance)
        instance.set_state("deleted")
        self.instances.pop(instance.uuid, None)
        shutil.rmtree(instance.root, ignore_errors=True)

    async def _kill_all(self, instance: FakeInstance) -> None:
        if instance.boot_task is not None and not instance.boot_task.done():
            instance.boot_task.cancel()
        for command in instance.commands.values():
            if command.proc is not None and command.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(command.proc.pid, signal.SIGKILL)
                await command.proc.wait()

    async def close(self) -> None:
        for instance in list(self.instances.values()):
            await self.delete(instance)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- commands (the sandbox plugin) --------------------------------------------------------

    async def run_command(self, instance: FakeInstance, body: dict[str, Any]) -> FakeCommand:
        uid = str(uuidlib.uuid4())
        logs = instance.root / ".plugin"
        logs.mkdir(exist_ok=True)
        command = FakeCommand(
            uuid=uid,
            cmdline=body["cmd"],
            cwd=body.get("cwd"),
            env=body.get("env"),
            out_path=logs / f"{uid}.out",
            err_path=logs / f"{uid}.err",
        )
        argv = ["/bin/sh", "-c", body["cmd"]] if isinstance(body["cmd"], str) else list(body["cmd"])
        cwd = instance.host_path(body["cwd"]) if body.get("cwd") else instance.root
        env = body.get("env") if body.get("env") is not None else {"PATH": "/usr/bin:/bin"}
        with command.out_path.open("wb") as out, command.err_path.open("wb") as err:
            command.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        instance.commands[uid] = command
        self._spawn(self._watch(instance, command))
        return command

    async def _watch(self, instance: FakeInstance, command: FakeCommand) -> None:
        """Wait for the program; crash the instance (kernel ENOMEM) if it outgrows its memory."""
        proc = command.proc
        assert proc is not None
        limit_kb = instance.memory_mb * 1024
        waiter = asyncio.ensure_future(proc.wait())
        try:
            while not waiter.done():
                if _rss_kb(proc.pid) > limit_kb:
                    await self.stop(instance, reason=STOP_KERNEL, code=KERNEL_OOM)
                    break
                await asyncio.wait({waiter}, timeout=MEMORY_POLL_S)
            await waiter
            if instance.state == "running":
                command.exitcode = proc.returncode
        finally:
            command.ended.set()

    # --- scale-to-zero ------------------------------------------------------------------------

    def touch(self, instance: FakeInstance) -> None:
        """Traffic reached the instance: wake it from standby (stateful: its processes kept)."""
        if instance.state == "standby":
            instance.woken += 1
            instance.set_state("running")
        instance.last_activity = time.monotonic()

    async def scale_to_zero_loop(self) -> None:
        """Put idle instances with scale-to-zero on into standby after their cooldown."""
        while True:
            now = time.monotonic()
            for instance in list(self.instances.values()):
                policy = instance.spec.get("scale_to_zero") or {}
                cooldown = (policy.get("cooldown_time_ms") or 0) / 1000
                if policy.get("policy") == "on" and instance.state == "running":
                    if now - instance.last_activity > cooldown:
                        instance.set_state("standby")
            await asyncio.sleep(0.02)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
