"""Settings of hosted apps (env prefix ``AGENTIC_APPS_``), composed into :class:`server.config.Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AppSettings"]


class AppSettings(BaseSettings):
    """Lifetimes, per-tenant limits and the link secret of hosted apps."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_APPS_", extra="ignore")

    enabled: bool = True
    default_ttl_s: float = Field(default=30 * 60, gt=0)  # ephemeral apps; extendable
    max_ttl_s: float = Field(default=24 * 3600, gt=0)
    max_per_tenant: int = Field(default=5, ge=0)
    tenant_memory_mb: int = Field(default=2048, gt=0)  # sum of the tenant's apps' memory caps
    idle_stop_s: float = Field(
        default=900, ge=0
    )  # a running app idle this long is stopped (woken on request)
    reap_interval_s: float = Field(default=15, gt=0)
    start_timeout_s: float = Field(default=30, gt=0)  # until the app answers on its port
    link_ttl_s: float = Field(default=24 * 3600, gt=0)  # signed links (and their cookie)
    link_secret: SecretStr | None = Field(default=None, repr=False)  # None: generated into secret_file
    secret_file: Path | None = None  # default: <agent protocol data dir>/app_link.key
    # Each app on its own origin {app_id}.{domain} (see server.apps.origin); browsers resolve
    # *.localhost to loopback. A deployment sets its wildcard name. "" serves apps on the API's
    # origin, where an app's scripts could act as the visitor: only for single-user set-ups.
    domain: str = Field(default="apps.localhost", pattern=r"^$|^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    # How users reach this server (e.g. https://agents.example.org): agents' replies then carry
    # absolute app links. None: links are paths (/apps/{id}/?agentic_link=...) on this server.
    public_url: str | None = None
