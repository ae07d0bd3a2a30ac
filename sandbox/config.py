"""Settings of the sandbox package (env prefix ``AGENTIC_SANDBOX_``).

Only this module reads the environment for ``sandbox``; backends receive a :class:`SandboxSettings`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandbox.base import Limits
from sandbox.egress_policy import EgressPolicy

__all__ = [
    "BROWSER_LIMITS",
    "DEFAULT_MAX_LIMITS",
    "SandboxSettings",
    "default_cache_dir",
    "default_data_dir",
    "egress_policy",
]


def default_data_dir() -> Path:
    """Return the default data dir (``~/.local/share/agentic``)."""
    return Path.home() / ".local" / "share" / "agentic"


def default_cache_dir() -> Path:
    """Return the default cache dir (``~/.cache/agentic``)."""
    return Path.home() / ".cache" / "agentic"


DEFAULT_MAX_LIMITS = Limits(
    cpu_seconds=120.0,
    cpus=2.0,
    memory_mb=4096,
    wall_seconds=600.0,
    pids=512,
    disk_mb=2048,
    output_bytes=16_000_000,
)
"""The server maximums when the operator sets none."""

BROWSER_LIMITS = Limits(
    cpu_seconds=120.0,
    cpus=1.0,
    memory_mb=1024,  # Chromium's browser, renderer and utility processes (~200-400 MB on simple pages)
    wall_seconds=120.0,  # a browser session's lifetime
    pids=256,  # pids.max counts threads: Chromium starts ~60-100
    disk_mb=256,  # profile and shared memory (--disable-dev-shm-usage puts it in /tmp)
    output_bytes=1_000_000,
)
"""A browser session's limits (larger than a light run: Chromium is a many-process program)."""


class SandboxSettings(BaseSettings):
    """How sandboxes are created on this host.

    ``data_dir`` and ``cache_dir`` also honour the project-wide ``AGENTIC_DATA_DIR`` /
    ``AGENTIC_CACHE_DIR`` so one variable moves every package.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTIC_SANDBOX_", extra="ignore")

    backend: str = "local"
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("AGENTIC_SANDBOX_DATA_DIR", "AGENTIC_DATA_DIR", "data_dir"),
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        validation_alias=AliasChoices("AGENTIC_SANDBOX_CACHE_DIR", "AGENTIC_CACHE_DIR", "cache_dir"),
    )
    # Server maximums: a request asking for more is refused (LimitsExceededError).
    max_limits: Limits = Field(default_factory=lambda: DEFAULT_MAX_LIMITS)
    # Admission (sandbox.guard): budgets of granted memory and of running sandboxes, global and per
    # tenant. A run that does not fit waits admission_wait_s, then is refused (HTTP 429, Retry-After).
    memory_budget_mb: int | None = Field(default=None, gt=0)  # None: 3/4 of the host's memory
    max_running: int = Field(default=64, gt=0)
    tenant_memory_budget_mb: int | None = Field(default=None, gt=0)  # None: half the memory budget
    tenant_max_running: int = Field(default=16, gt=0)
    admission_wait_s: float = Field(default=10.0, ge=0)
    # Local backend (bubblewrap).
    bwrap_path: Path = Path("/usr/bin/bwrap")
    launcher_cc: str = "cc"  # compiles sandbox/launcher.c once into cache_dir/bin
    python_path: str = "/usr/bin/python3"  # interpreter *inside* the sandbox (Debian's)
    sandbox_uid: int = 65534  # unprivileged uid the sandboxed code runs as (as seen inside)
    sandbox_gid: int = 65534
    # Local backend: each concurrent run gets its own host uid/gid (base + slot, mapped to sandbox_uid
    # inside) so runs cannot signal each other and RLIMIT_NPROC counts one run only. None: sandbox_uid.
    host_uid_base: int | None = 1_100_000
    scratch_root: Path | None = None  # where per-run scratch tmpfs mounts live; default: a private temp dir
    use_cgroups: bool = True  # cgroup v1 limits when writable; rlimits otherwise
    cgroup_root: Path = Path("/sys/fs/cgroup")
    cgroup_pool_size: int = 4  # pre-created cgroups kept ready (creating one costs ~40 ms)
    # Egress proxy (sandbox.egress_policy): the public internet only when allowed (the server sets it
    # from AGENTIC_ALLOW_NETWORK); internal hosts / CIDRs the operator opens; ports of the platform
    # (API, Postgres) that stay refused on loopback / host addresses even when allow-listed.
    egress_allow_internet: bool = False
    egress_allow: list[str] = Field(default_factory=list)
    egress_platform_ports: list[int] = Field(default_factory=lambda: [5432])
    # Sandboxed browser (sandbox.browser): Chromium's binary (not Debian's /usr/bin/chromium script,
    # which reads the host's /etc/chromium.d), a session's limits (wall_seconds: its lifetime, clamped
    # by max_limits like any run) and how many sessions run at once in this process.
    browser_path: Path = Path("/usr/lib/chromium/chromium")
    browser_limits: Limits = Field(default_factory=lambda: BROWSER_LIMITS)
    browser_max_sessions: int = Field(default=2, gt=0)
    # gVisor backend.
    runsc_path: Path | None = None  # default: `runsc` on PATH
    gvisor_platform: str = "ptrace"  # the only platform that works on this kind of host (no /dev/kvm)

    @field_validator("max_limits", "browser_limits", mode="before")
    @classmethod
    def _merge_max_limits(cls, value: object, info: ValidationInfo) -> object:
        """``{"memory_mb": 1024}`` changes that one field; the others keep their defaults."""
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, dict):
            base = BROWSER_LIMITS if info.field_name == "browser_limits" else DEFAULT_MAX_LIMITS
            return {**dataclasses.asdict(base), **value}
        return value


def egress_policy(settings: SandboxSettings, *, extra_ports: tuple[int, ...] = ()) -> EgressPolicy:
    """The egress proxy's policy from ``settings`` (``extra_ports``: more platform ports, e.g. the API's)."""
    return EgressPolicy.from_entries(
        settings.egress_allow,
        allow_internet=settings.egress_allow_internet,
        platform_ports=(*settings.egress_platform_ports, *extra_ports),
    )
