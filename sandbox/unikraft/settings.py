"""Settings of the Unikraft Cloud backend (env prefix ``AGENTIC_SANDBOX_UNIKRAFT_``).

The token is also read from ``UKC_TOKEN``, the variable the Unikraft Cloud SDK and CLI use, so one
exported token serves ``kraft`` and this backend alike. Nothing else in the package reads the
environment for Unikraft.
"""

from __future__ import annotations

import dataclasses
import json

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.base import Limits
from sandbox.config import DEFAULT_MAX_LIMITS
from sandbox.resources import Tier

__all__ = ["DEFAULT_TIER_MEMORY_MB", "UnikraftSettings"]

DEFAULT_TIER_MEMORY_MB: dict[str, int] = {"light": 256, "medium": 1024, "heavy": 4096}
"""Instance memory per resource tier (the tiers' ``memory_mb``), used to size pooled instances."""


class UnikraftSettings(BaseSettings):
    """Where Unikraft Cloud is, which image serves which library set, and how instances are used."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_SANDBOX_UNIKRAFT_", extra="ignore")

    # Where the API is: a metro code (``fra``) or, for a staging / self-hosted deployment or a test
    # double, an explicit platform API URL in ``base_url`` (it wins over ``metro``).
    metro: str = "fra"
    base_url: str | None = None
    control_plane_url: str | None = None  # default: the SDK's (https://controlplane.unikraft.cloud)
    token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_SANDBOX_UNIKRAFT_TOKEN", "UKC_TOKEN", "token"),
    )
    request_timeout_s: float = Field(default=30.0, gt=0)  # one API request (waits add their own time)
    trust_env: bool = True  # API calls honour HTTP(S)_PROXY / NO_PROXY of the server's environment
    # One image per library set: {"base": "my-org/agentic-base:1", "datascience": "..."}. Each image
    # must carry the interpreters below; the sandbox plugin (``plugin_image``) runs commands in it.
    images: dict[str, str] = Field(default_factory=dict)
    plugin_image: str = "plugins/sandbox:latest"
    python_command: list[str] = Field(default_factory=lambda: ["/usr/bin/python3", "-s", "-B"])
    typescript_command: list[str] = Field(
        default_factory=lambda: [
            "/usr/bin/deno",
            "run",
            "--no-remote",
            "--no-prompt",
            "--no-config",
            "--no-lock",
            "--allow-read=.",
            "--allow-write=.",
        ]
    )
    workdir: str = "/sandbox/work"  # the run's files and cwd inside the instance
    # Instances: how long one may take to boot (past it: SandboxStartError), memory per tier for
    # pooled instances, and the pool itself: ``pool_size`` stopped instances per library set and
    # pooled tier, started on demand (0: create one instance per run).
    boot_timeout_s: int = Field(default=30, gt=0)
    tier_memory_mb: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TIER_MEMORY_MB))
    pool_size: int = Field(default=0, ge=0)
    pool_tiers: list[Tier] = Field(default_factory=lambda: list[Tier](["light"]))
    pool_ttl_s: int = Field(default=3600, gt=0)  # a pooled instance unused this long is reaped
    # Hosted apps: public port of the service group, TTL, and scale-to-zero (stateful: the app's
    # process survives standby, so a request wakes the same program).
    app_ttl_s: int = Field(default=1800, gt=0)
    app_public_port: int = 443
    app_scale_to_zero: bool = True
    app_cooldown_ms: int = Field(default=10_000, ge=0)
    # Reach apps through this address instead of their public domain (a private edge; tests use
    # the fake's loopback edge); requests still carry the app's domain in ``Host``.
    app_edge_url: str | None = None
    # Leftovers: names start with ``name_prefix``; the reaper deletes ours whose expiry tag passed.
    name_prefix: str = "agentic"
    reap_interval_s: float = Field(default=300.0, ge=0)  # 0: reap only when the backend opens
    run_grace_s: int = Field(default=120, gt=0)  # a run's expiry: boot + wall time + this
    # Network. Instances reach the internet directly: our egress proxy cannot filter them. Runs are
    # refused until the operator accepts that here (fail closed). ``egress_proxy_url`` is handed to
    # runs with network as HTTP(S)_PROXY: honoured by cooperative programs, enforced for none.
    allow_direct_egress: bool = False
    egress_proxy_url: str | None = None
    # The operator's maximums (as ``AGENTIC_SANDBOX_MAX_LIMITS``): refused above, defence in depth.
    max_limits: Limits = Field(default_factory=lambda: DEFAULT_MAX_LIMITS)
    delete_attempts: int = Field(default=3, ge=1)  # deleting an instance retries API failures

    @field_validator("max_limits", mode="before")
    @classmethod
    def _merge_max_limits(cls, value: object) -> object:
        """``{"memory_mb": 1024}`` changes that one field; the others keep their defaults."""
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, dict):
            return {**dataclasses.asdict(DEFAULT_MAX_LIMITS), **value}
        return value

    @property
    def platform_url(self) -> str:
        """The platform API base URL: ``base_url``, else the metro's."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://api.{self.metro.lower()}.unikraft.cloud"

    def token_value(self) -> str | None:
        """The token, or None when none is set."""
        return self.token.get_secret_value() if self.token is not None else None
