"""Start, wake, stop and reap hosted apps; the one place that turns app rows into running services.

Lifecycle: an app row says what should run (pinned versions) and whether it is wanted (``stopped``
is only set by its owner); a service handle is what runs now. A request for a wanted app with no
live handle starts one (wake on request): after a crash, after the reaper stopped an idle app,
after a server restart. The reaper deletes expired ephemeral apps (terminating their service:
no process, cgroup, namespace or socket remains), stops idle ones, and terminates handles whose
row is gone or stopped (orphans). Every service passes the sandbox guard (limits clamped, memory
admitted for as long as it lives); per-tenant caps on app count and memory are checked here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sandbox.base import RunRequest
from sandbox.egress_apps import APPS_INTERNAL_DOMAIN
from sandbox.guard import GuardedSandbox
from sandbox.resources import resolve_limits
from sandbox.service import ServiceHandle
from server.apps.access import LinkSigner, hash_token, new_token
from server.apps.config import AppSettings
from server.apps.logs import AppLog
from server.apps.static import is_static_entry, static_command
from server.apps.store import AppRecord, AppStore
from workspace.base import VersionStore

__all__ = ["AppError", "AppLimitError", "AppManager", "AppNotFoundError", "AppSpec", "AppStartError"]

logger = logging.getLogger(__name__)

APP_PREFIX = "/apps"
CACHE_S = 2.0  # how long the proxy trusts a cached app row (changes made here apply at once)
EGRESS_SUFFIX = "." + APPS_INTERNAL_DOMAIN  # how a tenant's sandboxes name its app (through the egress proxy)


class AppError(Exception):
    """Base of the hosted-app errors (mapped to HTTP codes by the routes)."""


class AppNotFoundError(AppError):
    """No such app for this tenant (another tenant's app is "not found" too)."""


class AppLimitError(AppError):
    """The tenant has reached its number of apps or its app memory."""


class AppStartError(AppError):
    """The app's program did not start or did not answer on its port in time (``log``: its output)."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True, kw_only=True)
class AppSpec:
    """What to host: an entry file (``python`` / ``typescript``) or a command, run from pinned versions."""

    workspace_id: str
    name: str = "app"
    entry: str | None = None
    language: str | None = None
    command: tuple[str, ...] | None = None
    versions: Mapping[str, int | str | None] | None = None  # path -> version (None: latest); None: all
    port: int = 8080
    tier: str = "light"
    library_set: str = "base"
    env: dict[str, str] | None = None
    permanent: bool = False
    ttl_s: float | None = None
    public: bool = False


class AppManager:
    """Hosted apps of every tenant in this server (built by the lifespan; see the module docstring)."""

    def __init__(
        self,
        store: AppStore,
        files: VersionStore,
        sandbox: GuardedSandbox,
        settings: AppSettings,
        signer: LinkSigner,
    ) -> None:
        self.store = store
        self.files = files
        self.sandbox = sandbox
        self.settings = settings
        self.signer = signer
        self._handles: dict[str, ServiceHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_used: dict[str, float] = {}
        self._cache: dict[str, tuple[float, AppRecord | None]] = {}
        self._logs: dict[str, AppLog] = {}
        self._exits: dict[str, int] = {}
        self._closed = False

    def prefix(self, app_id: str) -> str:
        """The path the app is served under (``ROOT_PATH`` / ``X-Forwarded-Prefix``)."""
        return f"{APP_PREFIX}/{app_id}"

    async def create(self, tenant: str, spec: AppSpec) -> tuple[AppRecord, str]:
        """Pin the versions, store the app, start it; returns the app and its token (shown once).

        Raises:
            AppLimitError: the tenant's app count or memory would be exceeded.
            WorkspaceNotFoundError / FileNotFoundInWorkspaceError: from the version store.
        """
        s = self.settings
        limits = resolve_limits(spec.tier)  # type: ignore[arg-type]
        owned = [a for a in await self.store.list(tenant) if not a.expired()]
        if len(owned) >= s.max_per_tenant:
            raise AppLimitError(f"this tenant already hosts {len(owned)} apps (at most {s.max_per_tenant})")
        used = sum(a.memory_mb for a in owned if not a.stopped)
        if used + limits.memory_mb > s.tenant_memory_mb:
            raise AppLimitError(
                f"apps of this tenant would use {used + limits.memory_mb} MB "
                f"(at most {s.tenant_memory_mb} MB); stop or delete an app"
            )
        await self.files.get_workspace(spec.workspace_id, tenant)
        wanted = spec.versions or {info.path: None for info in await self.files.list_files(spec.workspace_id)}
        pins = {p: (await self.files.read(spec.workspace_id, p, v)).number for p, v in wanted.items()}
        if spec.entry is not None and spec.entry not in pins:
            raise AppStartError(f"entry {spec.entry!r} is not among the app's files")
        token = new_token()
        ttl = min(spec.ttl_s or s.default_ttl_s, s.max_ttl_s)
        record = AppRecord(
            id=secrets.token_hex(12),
            tenant=tenant,
            workspace_id=spec.workspace_id,
            name=spec.name[:200],
            token_hash=hash_token(token),
            permanent=spec.permanent,
            public=spec.public,
            stopped=False,
            memory_mb=limits.memory_mb,
            expires_at=None if spec.permanent else time.time() + ttl,
            created_at=time.time(),
            spec={
                "files": pins,
                "entry": spec.entry,
                "language": spec.language,
                "command": list(spec.command) if spec.command else None,
                "port": spec.port,
                "tier": spec.tier,
                "library_set": spec.library_set,
                "env": spec.env or {},
            },
        )
        await self.store.add(record)
        logger.info(
            "app %s created for tenant %s (%s)", record.id, tenant, "permanent" if spec.permanent else "ttl"
        )
        try:
            await self.ensure_running(record)
        except AppError:
            await self.store.delete(record.id)
            self._forget_log(record.id)
            raise
        return record, token

    async def get(self, tenant: str, app_id: str) -> AppRecord:
        """The tenant's app (never another tenant's)."""
        record = await self.store.get(app_id)
        if record is None or record.tenant != tenant or record.expired():
            raise AppNotFoundError(f"no app {app_id!r}")
        return record

    async def lookup(self, app_id: str) -> AppRecord | None:
        """The app row for the reverse proxy, cached for :data:`CACHE_S` (our own writes invalidate it)."""
        now = time.monotonic()
        cached = self._cache.get(app_id)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        record = await self.store.get(app_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[app_id] = (now, record)
        return record

    def forget(self, app_id: str) -> None:
        """Drop the cached row of ``app_id`` (after a change)."""
        self._cache.pop(app_id, None)

    def running(self, app_id: str) -> bool:
        """True when a service of the app runs now."""
        handle = self._handles.get(app_id)
        return handle is not None and handle.running

    async def _request(self, record: AppRecord) -> RunRequest:
        spec: dict[str, Any] = record.spec
        files = {
            p: (await self.files.read(record.workspace_id, p, n)).content for p, n in spec["files"].items()
        }
        env = {**spec["env"], "PORT": str(spec["port"]), "ROOT_PATH": self.prefix(record.id)}
        command = tuple(spec["command"]) if spec["command"] else None
        if command is None and is_static_entry(spec["entry"]):
            command = static_command(spec["entry"])
        return RunRequest(
            files=files,
            language=spec["language"] if command is None else None,
            entry=spec["entry"] if command is None else None,
            command=command,
            env=env,
            limits=resolve_limits(spec["tier"]),
            library_set=spec["library_set"],
            network=True,
            labels={"app": record.id, "workspace": record.workspace_id},
        )

    async def ensure_running(self, record: AppRecord) -> ServiceHandle:
        """The app's live service, started from its pinned versions when none runs (wake on request).

        Raises:
            AppStartError: it did not answer on its port within ``start_timeout_s``.
        """
        self._last_used[record.id] = time.monotonic()
        handle = self._handles.get(record.id)
        if handle is not None and handle.running:
            return handle
        lock = self._locks.setdefault(record.id, asyncio.Lock())
        async with lock:
            handle = self._handles.get(record.id)
            if handle is not None and handle.running:
                return handle
            if self._closed:
                raise AppStartError("the server is shutting down")
            request = await self._request(record)
            box = self.sandbox.for_owner(record.tenant)
            handle = await box.start_service(request, port=int(record.spec["port"]))
            self._handles[record.id] = handle
            self._watch(record.id, handle)
            if not await handle.wait_ready(self.settings.start_timeout_s):
                await handle.terminate()
                logs = self.log(record.id).tail(2000)
                raise AppStartError(
                    f"the app did not answer on port {record.spec['port']}; its output:\n{logs}", logs
                )
            logger.info("app %s of tenant %s started", record.id, record.tenant)
            return handle

    async def stop(self, tenant: str, app_id: str) -> AppRecord:
        """Stop the app's service and keep it stopped until started again."""
        record = await self.get(tenant, app_id)
        self.forget(app_id)
        await self.store.update(app_id, stopped=1)
        await self._terminate(app_id)
        return replace(record, stopped=True)

    async def start(self, tenant: str, app_id: str, *, restart: bool = False) -> AppRecord:
        """Start (or restart) the app from its pinned versions."""
        record = await self.get(tenant, app_id)
        if restart:
            await self._terminate(app_id)
        record = replace(record, stopped=False)
        self.forget(app_id)
        await self.store.update(app_id, stopped=0)
        await self.ensure_running(record)
        return record

    async def extend(
        self, tenant: str, app_id: str, *, ttl_s: float | None, permanent: bool | None
    ) -> AppRecord:
        """Give an ephemeral app a new TTL from now, or make it permanent / ephemeral."""
        record = await self.get(tenant, app_id)
        permanent = record.permanent if permanent is None else permanent
        ttl = min(ttl_s or self.settings.default_ttl_s, self.settings.max_ttl_s)
        expires = None if permanent else time.time() + ttl
        self.forget(app_id)
        await self.store.update(app_id, permanent=int(permanent), expires_at=expires)
        return replace(record, permanent=permanent, expires_at=expires)

    async def rotate_token(self, tenant: str, app_id: str) -> str:
        """A new access token (the old one stops working)."""
        await self.get(tenant, app_id)
        token = new_token()
        self.forget(app_id)
        await self.store.update(app_id, token_hash=hash_token(token))
        return token

    async def delete(self, tenant: str, app_id: str) -> None:
        """Stop the app and forget it."""
        await self.get(tenant, app_id)
        await self._terminate(app_id)
        self.forget(app_id)
        await self.store.delete(app_id)
        self._forget_log(app_id)
        logger.info("app %s deleted", app_id)

    def log(self, app_id: str) -> AppLog:
        """The app's output across its services (bounded; created empty for an app not started here)."""
        log = self._logs.get(app_id)
        if log is None:
            log = self._logs[app_id] = AppLog()
        return log

    def exits(self, app_id: str) -> int:
        """How often the app's program ended by itself (crashed or returned) in this process."""
        return self._exits.get(app_id, 0)

    def _watch(self, app_id: str, handle: ServiceHandle) -> None:
        """Copy the service's output into the app's log, with a line where it started and ended."""
        log = self.log(app_id)
        log.append("platform", "[agentic] app started\n")
        handle.on_output(lambda chunk: log.append(chunk.stream, chunk.data))

        async def ended() -> None:
            result = handle.result
            if result is None and handle.error is None:
                log.append("platform", "[agentic] app stopped\n")
                return
            self._exits[app_id] = self._exits.get(app_id, 0) + 1
            why = f"{result.reason.value}, exit code {result.exit_code}" if result else str(handle.error)
            log.append("platform", f"[agentic] the app's process ended by itself ({why})\n")

        handle.on_exit(ended)

    def _forget_log(self, app_id: str) -> None:
        log = self._logs.pop(app_id, None)
        self._exits.pop(app_id, None)
        if log is not None:
            log.close()

    async def _terminate(self, app_id: str) -> None:
        handle = self._handles.pop(app_id, None)
        self._last_used.pop(app_id, None)
        if handle is not None:
            await handle.terminate()

    async def egress_route(self, labels: Mapping[str, str], host: str, port: int) -> Path | None:
        """The egress proxy's hook: ``<app_id>.apps.internal`` leads a sandbox to its own tenant's app."""
        if not host.endswith(EGRESS_SUFFIX):
            return None
        record = await self.store.get(host[: -len(EGRESS_SUFFIX)])
        if record is None or record.tenant != labels.get("tenant") or record.stopped or record.expired():
            return None
        handle = await self.ensure_running(record)
        return handle.socket_path

    async def reap(self) -> None:
        """Delete expired apps, stop idle ones, end orphaned services (see the module docstring)."""
        now, idle_s = time.time(), self.settings.idle_stop_s
        records = {r.id: r for r in await self.store.list()}
        for record in records.values():
            if record.expired(now):
                logger.info("app %s of tenant %s expired; removing it", record.id, record.tenant)
                await self._terminate(record.id)
                self.forget(record.id)
                await self.store.delete(record.id)
                self._forget_log(record.id)
        for app_id, handle in list(self._handles.items()):
            row = records.get(app_id)
            idle = idle_s > 0 and time.monotonic() - self._last_used.get(app_id, 0.0) > idle_s
            if row is None or row.stopped or row.expired(now) or idle or not handle.running:
                if idle and handle.running:
                    logger.info("app %s idle for %.0f s; stopping it until its next request", app_id, idle_s)
                await self._terminate(app_id)
        for app_id in [a for a in self._logs if a not in records]:  # deleted elsewhere (another process)?
            if await self.store.get(app_id) is None:  # (or created since the listing: then it is there)
                self._forget_log(app_id)

    async def reap_periodically(self) -> None:
        """Run :meth:`reap` every ``reap_interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            try:
                await self.reap()
            except Exception:
                logger.exception("the app reaper failed; retrying next round")

    async def close(self) -> None:
        """Terminate every service (rows stay: apps come back on request after a restart)."""
        self._closed = True
        for app_id in list(self._handles):
            with contextlib.suppress(Exception):
                await self._terminate(app_id)
