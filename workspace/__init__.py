"""Versioned files: every write is a new immutable version (see :mod:`workspace.base` for the contract)."""

from workspace.base import FileInfo, SearchHit, Version, VersionStore, Workspace
from workspace.config import WorkspaceSettings, open_store
from workspace.errors import (
    BinaryContentError,
    FileNotFoundInWorkspaceError,
    FileTooLargeError,
    InvalidFileError,
    InvalidPathError,
    InvalidWorkspaceError,
    PathConflictError,
    VersionNotFoundError,
    WorkspaceError,
    WorkspaceNotFoundError,
)
from workspace.paths import normalise_path
from workspace.sql import SqlVersionStore

__all__ = [
    "BinaryContentError",
    "FileInfo",
    "FileNotFoundInWorkspaceError",
    "FileTooLargeError",
    "InvalidFileError",
    "InvalidPathError",
    "InvalidWorkspaceError",
    "PathConflictError",
    "SearchHit",
    "SqlVersionStore",
    "Version",
    "VersionNotFoundError",
    "VersionStore",
    "Workspace",
    "WorkspaceError",
    "WorkspaceNotFoundError",
    "WorkspaceSettings",
    "normalise_path",
    "open_store",
]
