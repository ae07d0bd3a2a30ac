"""The one ``Settings`` of the server process (env prefix ``AGENTIC_``).

It composes the packages' own settings (:class:`sandbox.config.SandboxSettings`,
:class:`workspace.config.WorkspaceSettings`, :class:`workspace.git_remotes.GitExportSettings`)
with the server's: where to listen, who may call, how large a request may be. Only the settings
modules read the environment.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sandbox.config import SandboxSettings
from server.agent_protocol.config import AgentProtocolSettings
from server.apps.config import AppSettings
from server.tracing.provider import TracingSettings
from workspace.config import WorkspaceSettings
from workspace.git_remotes import GitExportSettings

__all__ = ["DEFAULT_TENANT", "TENANT_PATTERN", "Settings", "split_key_entry"]

DEFAULT_TENANT = "default"
# Tenant names appear in logs and in the keys table: keep them short and printable.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Values that look like a key but are someone's placeholder: refused so nobody ships them.
_PLACEHOLDER_KEYS = frozenset({"changethis", "changeme", "secret", "password", "apikey", "api-key", "xxx"})


def _split_csv(value: object) -> object:
    """Accept ``"a, b"`` (env) as well as a list (code)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def split_key_entry(entry: str) -> tuple[str, str]:
    """Split an ``AGENTIC_API_KEYS`` entry: ``key`` (tenant "default") or ``tenant:key``."""
    tenant, sep, key = entry.partition(":")
    return (tenant, key) if sep else (DEFAULT_TENANT, entry)


class Settings(BaseSettings):
    """Everything ``agentic serve`` needs; nested package settings read their own env prefixes."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Secret: no default key. Entries are ``key`` (tenant "default") or ``tenant:key``. With none here
    # and none created by ``agentic keys create``, authentication is off (a warning is logged).
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    max_request_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # Browsers of any origin may call the API (keys travel in headers, never cookies), as with the
    # LangGraph server, so agent-chat-ui and Studio work out of the box. List origins (comma-separated
    # in the env) to narrow it; an empty value turns CORS off.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    # Runs asking for network access are refused unless this is on.
    allow_network: bool = False
    log_level: str = "info"
    # "json": one JSON object per line with tenant / thread / run ids; "text" for humans.
    log_format: Literal["json", "text"] = "json"
    # Token bucket per API key: refill rate and bucket size (None: one minute's worth). 0 turns it off.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    # Prometheus text format at /metrics (no tenant data in it; no auth, like most exporters).
    metrics_enabled: bool = True
    # On SIGTERM / Ctrl-C: how long open requests (a REST run, a stream) may go on before they are
    # cancelled, so the shutdown always reaches the step that hands this process's runs back to the
    # queue (without a cap, one long request would hold it until the process is killed).
    shutdown_grace_s: int = Field(default=30, ge=1, le=3600)

    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    agent_protocol: AgentProtocolSettings = Field(default_factory=AgentProtocolSettings)
    apps: AppSettings = Field(default_factory=AppSettings)
    export: GitExportSettings = Field(default_factory=GitExportSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _parse_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_keys")
    @classmethod
    def _refuse_placeholders(cls, keys: list[str]) -> list[str]:
        for entry in keys:
            tenant, key = split_key_entry(entry)
            if not TENANT_PATTERN.match(tenant):
                raise ValueError(
                    f"AGENTIC_API_KEYS: tenant {tenant!r} must be 1-64 letters, digits, '_', '.' or '-'"
                )
            if key.lower() in _PLACEHOLDER_KEYS or len(key) < 8:
                raise ValueError("AGENTIC_API_KEYS holds a placeholder or a key shorter than 8 characters")
        return keys

    @property
    def auth_enabled(self) -> bool:
        """True when at least one API key is configured in the environment (keys in the database count
        too, see :class:`server.keys.KeyRing`)."""
        return bool(self.api_keys)

    @property
    def tenant_keys(self) -> list[tuple[str, str]]:
        """The configured keys as ``(tenant, key)`` pairs."""
        return [split_key_entry(entry) for entry in self.api_keys]

    @property
    def bucket_size(self) -> int:
        """Requests a key may burst before the rate limit applies."""
        return self.rate_limit_burst or max(1, self.rate_limit_per_minute)
