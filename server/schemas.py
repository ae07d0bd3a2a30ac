"""Request and response bodies of the REST API (``XCreate`` in, ``XPublic`` out).

Converters from the data layer's dataclasses live beside the models so routes stay thin.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from sandbox.base import Limits, RunResult
from workspace.base import FileInfo, Version, Workspace
from workspace.git_export import ExportResult

__all__ = [
    "DiffPublic",
    "ErrorPublic",
    "ExportCreate",
    "ExportPublic",
    "FileInfoPublic",
    "FileWrite",
    "HealthPublic",
    "MAX_INT64",
    "LimitsOverride",
    "LimitsPublic",
    "RollbackCreate",
    "RunCreate",
    "RunPublic",
    "VersionNumber",
    "VersionPublic",
    "VersionRef",
    "VersionSpec",
    "VersionSummary",
    "WorkspaceCreate",
    "WorkspacePublic",
    "check_json_value",
    "run_public",
]

Tier = Literal["light", "medium", "heavy"]
LanguageName = Literal["python", "typescript"]

# The largest integer the databases store (signed 64-bit); a bigger one would overflow the driver.
MAX_INT64 = 2**63 - 1


def _check_version_spec(value: str) -> str:
    """Refuse a version number the database cannot hold, so it is a 422 rather than an overflow."""
    digits = value[1:] if value[:1] in ("v", "V") else value
    if digits.isascii() and digits.isdigit() and int(digits) > MAX_INT64:
        raise ValueError(f"a version number must be at most {MAX_INT64}")
    return value


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_json_value(value: Any, where: str = "body") -> Any:
    """Refuse what JSON parses but the stores cannot keep exactly: integers past 64 bits, lone surrogates.

    Python reads both from a request body; the database drivers and the JSON encoder of stored
    metadata then fail (a 500) or round them to floats. The message names the place to fix.
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, place = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if abs(item) > MAX_INT64:
                raise ValueError(f"{place}: the integer is past 64 bits (at most {MAX_INT64}); send a string")
        elif isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                raise ValueError(f"{place}: the text holds a lone UTF-16 surrogate, which is not Unicode")
        elif isinstance(item, dict):
            for key, sub in item.items():
                label = f"{place}.{str(key)[:40]}"
                stack.append((key, label + " (key)"))
                stack.append((sub, label))
        elif isinstance(item, list):
            stack.extend((sub, f"{place}[{i}]") for i, sub in enumerate(item))
    return value


VersionNumber = Annotated[int, Field(ge=1, le=MAX_INT64, description="Version number (1 is the first)")]
"""A version named by number, bounded to what the database stores."""

VersionSpec = Annotated[str, AfterValidator(_check_version_spec)]
"""A version id or number as text (``"3"``, ``"v3"``, or a 32-hex id); numbers are bounded."""

VersionRef = VersionNumber | VersionSpec
"""A version in a JSON body: a number or a string as :data:`VersionSpec`."""


class _Strict(BaseModel):
    """Request bodies refuse unknown fields so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Text with lone surrogates or integers past 64 bits cannot be stored: a 422, not a 500."""
        return check_json_value(data)


class ErrorDetail(BaseModel):
    type: str
    message: str
    detail: Any = None


class ErrorPublic(BaseModel):
    """Every non-2xx response has this shape."""

    error: ErrorDetail


# --- workspaces ---------------------------------------------------------------------------------


class WorkspaceCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        """The store keeps names stripped; a blank or NUL-bearing one is the client's to fix."""
        if not value.strip():
            raise ValueError("name must not be blank")
        if "\x00" in value:
            raise ValueError("name must not contain a NUL character")
        return value


class WorkspacePublic(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def from_workspace(cls, ws: Workspace) -> WorkspacePublic:
        return cls(id=ws.id, name=ws.name, created_at=ws.created_at)


# --- files and versions ---------------------------------------------------------------------------


class FileWrite(_Strict):
    """A new version of a text file."""

    content: str
    author: str = Field(default="user", min_length=1, max_length=200)
    message: str = Field(default="", max_length=2000)


class VersionSummary(BaseModel):
    """A version without its content (history listings)."""

    id: str
    workspace_id: str
    path: str
    number: int
    parent_id: str | None
    author: str
    message: str
    created_at: datetime
    size: int
    sha256: str

    @classmethod
    def from_version(cls, v: Version) -> VersionSummary:
        data = asdict(v)
        data.pop("content")
        data.pop("diff")
        return cls(**data)


class VersionPublic(VersionSummary):
    """A version with its content and the unified diff to its parent."""

    content: str
    diff: str

    @classmethod
    def from_version(cls, v: Version) -> VersionPublic:
        return cls(**asdict(v))


class FileInfoPublic(BaseModel):
    path: str
    version_id: str
    number: int
    size: int
    updated_at: datetime

    @classmethod
    def from_info(cls, info: FileInfo) -> FileInfoPublic:
        return cls(**asdict(info))


class DiffPublic(BaseModel):
    path: str
    from_version: str
    to_version: str
    diff: str


class RollbackCreate(_Strict):
    """Restore ``version`` (id or number) as a new version."""

    version: VersionRef
    author: str = Field(default="user", min_length=1, max_length=200)


# --- git export -----------------------------------------------------------------------------------


class ExportCreate(_Strict):
    """Which of the operator's remotes to push the workspace's history to (by name, never a URL)."""

    remote: str = Field(min_length=1, max_length=64, description="A remote name the server allows.")


class ExportPublic(BaseModel):
    """What an export pushed: ``commits`` new commits, ending at ``head`` on ``branch``."""

    workspace_id: str
    remote: str
    branch: str
    head: str | None = Field(description="The branch's commit after the export (null: nothing exported).")
    previous_head: str | None = Field(description="The branch's commit before (null: a new branch).")
    commits: int = Field(description="New commits pushed now (0: the remote was up to date).")
    versions: int = Field(description="Versions in the workspace.")
    skipped_paths: list[str] = Field(description="Paths git must not carry (a .git component).")

    @classmethod
    def from_result(cls, result: ExportResult) -> ExportPublic:
        return cls(**asdict(result))


# --- runs -----------------------------------------------------------------------------------------


class LimitsOverride(_Strict):
    """Per-run overrides of the tier's limits (each capped by the server's maximums)."""

    cpu_seconds: float | None = Field(default=None, gt=0)
    cpus: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    wall_seconds: float | None = Field(default=None, gt=0)
    pids: int | None = Field(default=None, gt=0)
    disk_mb: int | None = Field(default=None, gt=0)
    output_bytes: int | None = Field(default=None, gt=0)

    def as_mapping(self) -> dict[str, float | int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class LimitsPublic(BaseModel):
    cpu_seconds: float
    cpus: float
    memory_mb: int
    wall_seconds: float
    pids: int
    disk_mb: int
    output_bytes: int

    @classmethod
    def from_limits(cls, limits: Limits) -> LimitsPublic:
        return cls(**asdict(limits))


class RunCreate(_Strict):
    """Run a workspace file (``path``, optionally at ``version``) or a snippet (``code``)."""

    path: str | None = Field(default=None, min_length=1)
    version: VersionRef | None = None
    code: str | None = None
    language: LanguageName | None = None
    tier: Tier | None = None
    limits: LimitsOverride | None = None
    library_set: str = Field(default="base", min_length=1, max_length=100)
    args: list[str] = Field(default_factory=list, max_length=256)
    stdin: str = ""
    network: bool = False

    @model_validator(mode="after")
    def _path_xor_code(self) -> RunCreate:
        if (self.path is None) == (self.code is None):
            raise ValueError("give exactly one of 'path' (a workspace file) or 'code' (a snippet)")
        if self.version is not None and self.path is None:
            raise ValueError("'version' only applies to 'path'")
        return self


class RunPublic(BaseModel):
    """The outcome of a run, with the tier and limits it ran under."""

    id: str
    workspace_id: str
    path: str | None
    version: int | None
    language: LanguageName
    tier: Tier
    limits: LimitsPublic
    library_set: str
    backend: str
    exit_code: int
    ok: bool
    reason: str
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    peak_memory_mb: float | None
    boot_s: float


def run_public(
    result: RunResult,
    *,
    run_id: str,
    workspace_id: str,
    path: str | None,
    version: int | None,
    language: LanguageName,
    tier: Tier,
    limits: Limits,
    library_set: str,
) -> RunPublic:
    """Combine a sandbox result with what the server decided about the run."""
    return RunPublic(
        id=run_id,
        workspace_id=workspace_id,
        path=path,
        version=version,
        language=language,
        tier=tier,
        limits=LimitsPublic.from_limits(limits),
        library_set=library_set,
        backend=result.backend,
        exit_code=result.exit_code,
        ok=result.ok,
        reason=result.reason.value,
        stdout=result.stdout,
        stderr=result.stderr,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        duration_s=result.duration_s,
        peak_memory_mb=result.peak_memory_mb,
        boot_s=result.boot_s,
    )


# --- health ---------------------------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: Literal["ok"]
    version: str
    sandbox_backend: str
    backends: dict[str, str | None] = Field(
        description="Each known sandbox backend: null when usable, else why not and how to fix it."
    )
    store: str
    auth: bool
