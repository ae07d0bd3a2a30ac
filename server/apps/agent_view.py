"""The app manager as one tenant's run sees it (``context.apps``): host, inspect and remove its apps.

The Agent Protocol executor builds one view per run from the run's tenant (a client never names
the tenant, and cannot set ``apps`` in its context), like the tenant-scoped store and sandbox. The
view speaks the agents' types (:mod:`tools.apps`), so the graph never imports the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sandbox.errors import SandboxError
from sandbox.plan import require_language
from server.apps.manager import AppError, AppManager, AppNotFoundError, AppSpec, AppStartError
from server.apps.static import is_static_entry
from tools.apps import AppHostingError, AppStatus, HostedApp
from workspace.errors import WorkspaceError

__all__ = ["LOG_TAIL_CHARS", "TenantApps"]

logger = logging.getLogger(__name__)

LOG_TAIL_CHARS = 3000


class TenantApps:
    """One tenant's hosted apps, for the agents (implements :class:`tools.apps.AppHost`)."""

    def __init__(self, manager: AppManager, tenant: str) -> None:
        self.manager = manager
        self.tenant = tenant

    def link(self, app_id: str) -> tuple[str, float]:
        """A signed link that opens the app, and its expiry (absolute with ``public_url`` set)."""
        value, expires = self.manager.signer.sign(app_id, self.manager.settings.link_ttl_s)
        base = (self.manager.settings.public_url or "").rstrip("/")
        return f"{base}{self.manager.prefix(app_id)}/?agentic_link={value}", float(expires)

    async def host(
        self,
        workspace_id: str,
        *,
        entry: str,
        versions: Mapping[str, str],
        permanent: bool = False,
        ttl_s: float | None = None,
        port: int = 8080,
    ) -> HostedApp:
        """Host ``entry`` from the pinned ``versions`` (other files of the workspace at their latest)."""
        files = self.manager.files
        try:
            language = None if is_static_entry(entry) else require_language(entry)
            await files.get_workspace(workspace_id, self.tenant)
            pinned: dict[str, int | str | None] = {i.path: None for i in await files.list_files(workspace_id)}
            pinned.update(versions)
            spec = AppSpec(
                workspace_id=workspace_id,
                name=entry,
                entry=entry,
                language=language,
                versions=pinned,
                port=port,
                permanent=permanent,
                ttl_s=ttl_s,
            )
            record, _token = await self.manager.create(self.tenant, spec)
        except AppStartError as exc:
            message = str(exc).split("; its output:", 1)[0]
            raise AppHostingError(message, log=exc.log, fixable=bool(exc.log)) from exc
        except (AppError, SandboxError, WorkspaceError) as exc:
            raise AppHostingError(str(exc)) from exc
        link, link_expires = self.link(record.id)
        logger.info("app %s hosted for a run of tenant %s", record.id, self.tenant)
        return HostedApp(
            id=record.id,
            name=record.name,
            link=link,
            link_expires_at=link_expires,
            expires_at=record.expires_at,
        )

    async def status(self, app_id: str) -> AppStatus:
        """Whether the app runs, how often it ended by itself, and its log's end."""
        try:
            await self.manager.get(self.tenant, app_id)
        except AppNotFoundError as exc:
            raise AppHostingError(str(exc)) from exc
        return AppStatus(
            running=self.manager.running(app_id),
            exits=self.manager.exits(app_id),
            log_tail=self.manager.log(app_id).tail(LOG_TAIL_CHARS),
        )

    async def remove(self, app_id: str) -> None:
        """Stop and delete the app; an app already gone is fine."""
        try:
            await self.manager.delete(self.tenant, app_id)
        except AppNotFoundError:
            pass
