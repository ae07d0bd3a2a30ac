"""Settings of the sandbox package: the shared ones, and one section per backend.

==============================  ==================  ===============================================
env prefix                      model               what
==============================  ==================  ===============================================
``AGENTIC_SANDBOX_``            SandboxSettings     backend name, data / cache dirs, maximums,
                                                    admission budgets, egress policy, browser
``AGENTIC_SANDBOX_LOCAL_``      LocalSettings       the ``local`` backend (bubblewrap)
``AGENTIC_SANDBOX_GVISOR_``     GVisorSettings      the ``gvisor`` backend (runsc)
``AGENTIC_SANDBOX_UNIKRAFT_``   UnikraftSettings    the ``unikraft`` backend (Unikraft Cloud)
``AGENTIC_SANDBOX_WARM_``       WarmSettings        the warm pool in front of the backend
==============================  ==================  ===============================================

Why sections: each backend's knobs live under its own prefix, so a new backend (``KATA_``) adds its
section here and touches no other. Before the sections these knobs had no
backend in their names (``AGENTIC_SANDBOX_BWRAP_PATH``, ``AGENTIC_SANDBOX_CGROUP_POOL_SIZE``); those
names are still read, below the prefixed ones (:class:`_HostBackendSettings`).

Only this module reads the environment for ``sandbox``; backends receive a :class:`SandboxSettings`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from sandbox.base import Limits
from sandbox.commands import DENO_RUN_FLAGS
from sandbox.egress_policy import EgressPolicy
from sandbox.resources import TIERS, Tier

__all__ = [
    "BROWSER_LIMITS",
    "DEFAULT_MAX_LIMITS",
    "DEFAULT_TIER_MEMORY_MB",
    "GVisorSettings",
    "LocalSettings",
    "SandboxSettings",
    "UnikraftSettings",
    "WarmSettings",
    "default_cache_dir",
    "default_data_dir",
    "egress_policy",
]

_LEGACY_PREFIX = "AGENTIC_SANDBOX_"
# Settings that moved into a backend's section: given at the top they would be ignored silently.
_MOVED = {
    **dict.fromkeys(("bwrap_path", "launcher_cc", "python_path", "host_uid_base"), "local"),
    **dict.fromkeys(("runsc_path", "gvisor_platform"), "gvisor"),
    **dict.fromkeys(
        ("sandbox_uid", "sandbox_gid", "use_cgroups", "cgroup_root", "cgroup_pool_size"), "local / gvisor"
    ),
}


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


class _HostBackendSettings(BaseSettings):
    """What every backend running on this host's kernel has: its sandbox uid and its cgroups.

    Each such backend has its own copy under its own prefix (each keeps its own cgroup pool). The
    names without a backend (``AGENTIC_SANDBOX_CGROUP_POOL_SIZE``, ...) are read too, below the
    prefixed ones, so a host configured before the sections keeps its settings.
    """

    sandbox_uid: int = 65534  # unprivileged uid the sandboxed code runs as (as seen inside)
    sandbox_gid: int = 65534
    use_cgroups: bool = True  # cgroup v1 limits when writable; rlimits otherwise
    cgroup_root: Path = Path("/sys/fs/cgroup")
    cgroup_pool_size: int = Field(default=4, ge=0)  # pre-created cgroups kept ready (one costs ~40 ms)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        legacy = EnvSettingsSource(settings_cls, env_prefix=_LEGACY_PREFIX)
        return init_settings, env_settings, dotenv_settings, legacy, file_secret_settings


class LocalSettings(_HostBackendSettings):
    """The ``local`` backend: bubblewrap, a compiled launcher, cgroup v1 (``AGENTIC_SANDBOX_LOCAL_*``)."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_SANDBOX_LOCAL_", extra="ignore")

    bwrap_path: Path = Path("/usr/bin/bwrap")
    launcher_cc: str = "cc"  # compiles sandbox/host/launcher.c once into cache_dir/bin
    python_path: str = (
        "/usr/bin/python3"  # interpreter *inside* the sandbox (Debian's); library sets match it
    )
    # Each concurrent run gets its own host uid/gid (base + slot, mapped to sandbox_uid inside) so runs
    # cannot signal each other and RLIMIT_NPROC counts one run only. None: sandbox_uid for every run.
    host_uid_base: int | None = 1_100_000


class GVisorSettings(_HostBackendSettings):
    """The ``gvisor`` backend: runsc with an OCI bundle per run (``AGENTIC_SANDBOX_GVISOR_*``)."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_SANDBOX_GVISOR_", extra="ignore")

    runsc_path: Path | None = None  # default: `runsc` on PATH
    platform: str = "ptrace"  # the only platform that works on this kind of host (no /dev/kvm)


DEFAULT_TIER_MEMORY_MB: dict[str, int] = {"light": 256, "medium": 1024, "heavy": 4096}
"""Unikraft instance memory per resource tier (the tiers' ``memory_mb``), used to size pooled instances."""


class UnikraftSettings(BaseSettings):
    """The ``unikraft`` backend: Unikraft Cloud through its SDK (``AGENTIC_SANDBOX_UNIKRAFT_*``).

    The token is also read from ``UKC_TOKEN``, the variable the Unikraft Cloud SDK and CLI use, so one
    exported token serves ``kraft`` and this backend alike. The maximums are the shared ones
    (``SandboxSettings.max_limits``).
    """

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
    typescript_command: list[str] = Field(default_factory=lambda: ["/usr/bin/deno", *DENO_RUN_FLAGS])
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
    delete_attempts: int = Field(default=3, ge=1)  # deleting an instance retries API failures

    @property
    def platform_url(self) -> str:
        """The platform API base URL: ``base_url``, else the metro's."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://api.{self.metro.lower()}.unikraft.cloud"

    def token_value(self) -> str | None:
        """The token, or None when none is set."""
        return self.token.get_secret_value() if self.token is not None else None


class WarmSettings(BaseSettings):
    """The warm pool (:mod:`sandbox.warm`): pre-started single-use sandboxes (``AGENTIC_SANDBOX_WARM_*``).

    A key is what a pre-started sandbox can serve: language, library set, scratch size (the tier's
    ``disk_mb``) and the backend's fixed parts (:mod:`sandbox.warm.keys`). Each key seen in the last
    ``idle_ttl_s`` keeps as many idle sandboxes as its demand asks (the most runs of it at once in
    ``demand_window_s`` plus the runs arriving while one starts), at most ``max_idle_per_key``;
    ``prewarm`` keys keep at least ``min_idle`` from the start. Idle sandboxes together stay within
    ``memory_budget_mb`` of measured memory (PSS), a budget of its own: the admission budget counts
    the memory caps of running programs, and an idle sandbox holds a few MB of its cap, not all of it.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTIC_SANDBOX_WARM_", extra="ignore")

    enabled: bool = True  # False: every run starts cold, exactly as without the pool
    # Keys warmed from open, as ``language/library_set/tier`` (TypeScript ones for entry ``main.ts``).
    prewarm: list[str] = Field(default_factory=lambda: ["python/base/light"])
    min_idle: int = Field(default=1, ge=0)  # per prewarm key
    max_idle_per_key: int = Field(default=4, ge=0)
    memory_budget_mb: int = Field(default=512, ge=0)  # PSS of all idle sandboxes together
    memory_estimate_mb: int = Field(default=32, gt=0)  # a key's idle PSS before one was measured
    idle_ttl_s: float = Field(default=300.0, gt=0)  # an idle sandbox (and a key's demand) lives this long
    demand_window_s: float = Field(default=60.0, gt=0)
    refill_concurrency: int = Field(default=2, gt=0)  # sandboxes starting at once
    start_timeout_s: float = Field(default=60.0, gt=0)  # start + preload; past it the start failed
    # ``local`` Python keys: each warm sandbox is a fork of the key's fork server (zygote), which
    # started the interpreter and imported the preload once (sandbox.host.warm_fork); False: each
    # starts whole. A zygote is replaced after ``fork_max_children`` children or ``fork_max_age_s``.
    fork: bool = True
    fork_max_children: int = Field(default=500, gt=0)
    fork_max_age_s: float = Field(default=600.0, gt=0)

    @field_validator("prewarm")
    @classmethod
    def _check_prewarm(cls, value: list[str]) -> list[str]:
        """Each entry names a language, a library set and a tier."""
        for entry in value:
            parts = entry.split("/")
            if len(parts) != 3 or parts[0] not in ("python", "typescript") or parts[2] not in TIERS:
                raise ValueError(
                    f"prewarm entry {entry!r}: write language/library_set/tier, e.g. python/base/light"
                )
        return value


class SandboxSettings(BaseSettings):
    """How sandboxes are created on this host: the shared settings and each backend's section.

    ``data_dir`` and ``cache_dir`` also honour the project-wide ``AGENTIC_DATA_DIR`` /
    ``AGENTIC_CACHE_DIR`` so one variable moves every package.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTIC_SANDBOX_", extra="ignore")

    backend: str = "local"  # a name in sandbox.registry.BACKENDS
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("AGENTIC_SANDBOX_DATA_DIR", "AGENTIC_DATA_DIR", "data_dir"),
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        validation_alias=AliasChoices("AGENTIC_SANDBOX_CACHE_DIR", "AGENTIC_CACHE_DIR", "cache_dir"),
    )
    # Server maximums: the guard clamps every run to them; a backend refuses anything above them.
    max_limits: Limits = Field(default_factory=lambda: DEFAULT_MAX_LIMITS)
    # Admission (sandbox.guard): budgets of granted memory and of running sandboxes, global and per
    # tenant. A run that does not fit waits admission_wait_s, then is refused (HTTP 429, Retry-After).
    memory_budget_mb: int | None = Field(default=None, gt=0)  # None: 3/4 of the host's memory
    max_running: int = Field(default=64, gt=0)
    tenant_memory_budget_mb: int | None = Field(default=None, gt=0)  # None: half the memory budget
    tenant_max_running: int = Field(default=16, gt=0)
    admission_wait_s: float = Field(default=10.0, ge=0)
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
    # One section per backend, each read from its own prefix.
    local: LocalSettings = Field(default_factory=LocalSettings)
    gvisor: GVisorSettings = Field(default_factory=GVisorSettings)
    unikraft: UnikraftSettings = Field(default_factory=UnikraftSettings)
    warm: WarmSettings = Field(default_factory=WarmSettings)

    @model_validator(mode="before")
    @classmethod
    def _refuse_moved(cls, data: Any) -> Any:
        """A backend knob given at the top (``SandboxSettings(cgroup_pool_size=2)``) is refused."""
        moved = sorted(set(data) & set(_MOVED)) if isinstance(data, dict) else []
        if moved:
            where = ", ".join(f"{name} -> {_MOVED[name]}" for name in moved)
            raise ValueError(f"these settings live in a backend's section now: {where}")
        return data

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
