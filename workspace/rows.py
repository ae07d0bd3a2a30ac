"""Row <-> dataclass conversions and the small parsers shared by the store's queries."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import ColumnElement, Row

from workspace.base import Version, Workspace
from workspace.errors import InvalidWorkspaceError, VersionNotFoundError
from workspace.schema import versions

__all__ = ["check_name", "new_id", "to_version", "to_workspace", "version_clause"]

_NAME_MAX = 200
_NUMBER_SPEC = re.compile(r"v?(\d{1,9})", re.ASCII)
_MAX_NUMBER = 2**63 - 1  # a version number the databases can compare (signed 64-bit)


def new_id() -> str:
    """Return a new random id (32 hex characters)."""
    return uuid.uuid4().hex


def to_version(row: Row[Any]) -> Version:
    """Build a Version from a ``versions`` row."""
    m = row._mapping
    return Version(
        id=m["id"],
        workspace_id=m["workspace_id"],
        path=m["path"],
        number=m["number"],
        content=m["content"],
        diff=m["diff"],
        parent_id=m["parent_id"],
        author=m["author"],
        message=m["message"],
        created_at=m["created_at"],
        size=m["size"],
        sha256=m["sha256"],
    )


def to_workspace(row: Row[Any]) -> Workspace:
    """Build a Workspace from a ``workspaces`` row."""
    m = row._mapping
    return Workspace(id=m["id"], name=m["name"], tenant=m["tenant"], created_at=m["created_at"])


def version_clause(spec: str | int) -> ColumnElement[bool]:
    """Select a version by id, or by number (an int, or digits optionally after ``v``)."""
    if isinstance(spec, bool) or not isinstance(spec, int | str):
        raise VersionNotFoundError(f"a version is an id or a number, not {spec!r}")
    if isinstance(spec, int):
        if abs(spec) > _MAX_NUMBER:  # no such version; the driver would overflow on it
            raise VersionNotFoundError(f"no version {spec!r}: version numbers are at most {_MAX_NUMBER}")
        return versions.c.number == spec
    match = _NUMBER_SPEC.fullmatch(spec)
    return versions.c.number == int(match.group(1)) if match else versions.c.id == spec


def check_name(kind: str, value: str) -> str:
    """Return ``value`` stripped, or raise InvalidWorkspaceError naming ``kind``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidWorkspaceError(f"{kind} must be a non-empty string")
    if len(value) > _NAME_MAX or "\x00" in value:
        raise InvalidWorkspaceError(f"{kind} must be at most {_NAME_MAX} characters, without NUL")
    return value.strip()
