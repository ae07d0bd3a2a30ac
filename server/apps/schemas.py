"""Request and response schemas of ``/v1/apps`` (``AppCreate`` / ``AppUpdate`` / ``AppPublic``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from server.apps.store import AppRecord

__all__ = ["AppCreate", "AppCreated", "AppLink", "AppPublic", "AppUpdate"]


class AppCreate(BaseModel):
    """Host an entry file (or a command) of a workspace, from pinned versions."""

    workspace_id: str
    name: str = Field(default="app", max_length=200)
    entry: str | None = Field(default=None, description="File to run, e.g. app.py (python) or main.ts")
    language: Literal["python", "typescript"] | None = None
    command: list[str] | None = Field(default=None, description="Argv instead of an entry file")
    versions: dict[str, int | None] | None = Field(
        default=None, description="path -> version to pin (null: latest); omitted: every file at its latest"
    )
    port: int = Field(default=8080, ge=1024, le=65535, description="Port the app listens on ($PORT)")
    tier: Literal["light", "medium", "heavy"] = "light"
    library_set: str = "base"
    env: dict[str, str] | None = None
    permanent: bool = False
    ttl_s: float | None = Field(
        default=None, gt=0, description="Lifetime of an ephemeral app (default 30 min)"
    )
    public: bool = Field(default=False, description="Open to anyone without a token or link")


class AppUpdate(BaseModel):
    """Extend the TTL (from now), make permanent / ephemeral, or open / close to the public."""

    ttl_s: float | None = Field(default=None, gt=0)
    permanent: bool | None = None
    public: bool | None = None


class AppPublic(BaseModel):
    """An app as its owner sees it (never its token)."""

    id: str
    name: str
    workspace_id: str
    url: str
    permanent: bool
    public: bool
    stopped: bool
    running: bool
    expires_at: float | None
    memory_mb: int
    files: dict[str, int]
    port: int

    @classmethod
    def of(cls, record: AppRecord, *, url: str, running: bool) -> AppPublic:
        """The public view of ``record``."""
        return cls(
            id=record.id,
            name=record.name,
            workspace_id=record.workspace_id,
            url=url,
            permanent=record.permanent,
            public=record.public,
            stopped=record.stopped,
            running=running,
            expires_at=record.expires_at,
            memory_mb=record.memory_mb,
            files=record.spec["files"],
            port=record.spec["port"],
        )


class AppLink(BaseModel):
    """An expiring signed link that opens the app in a browser."""

    url: str
    expires_at: int


class AppCreated(AppPublic):
    """The new app with its access token (shown only now) and a signed link."""

    token: str
    link: AppLink
