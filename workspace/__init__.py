"""Versioned files: every write is a new immutable version (see :mod:`workspace.base` for the contract)."""

from workspace.base import FileInfo, SearchHit, Version, VersionStore, Workspace
from workspace.config import WorkspaceSettings, open_store
from workspace.errors import (
    BinaryContentError,
    ExportRejectedError,
    FileNotFoundInWorkspaceError,
    FileTooLargeError,
    GitExportError,
    GitRemoteError,
    GitTimeoutError,
    GitUnavailableError,
    InvalidFileError,
    InvalidPathError,
    InvalidWorkspaceError,
    PathConflictError,
    UnknownRemoteError,
    VersionNotFoundError,
    WorkspaceError,
    WorkspaceNotFoundError,
)
from workspace.git_export import ExportResult, GitExporter
from workspace.git_remotes import GitExportSettings, GitRemote
from workspace.paths import normalise_path
from workspace.sql import SqlVersionStore

__all__ = [
    "BinaryContentError",
    "ExportRejectedError",
    "ExportResult",
    "FileInfo",
    "FileNotFoundInWorkspaceError",
    "FileTooLargeError",
    "GitExportError",
    "GitExportSettings",
    "GitExporter",
    "GitRemote",
    "GitRemoteError",
    "GitTimeoutError",
    "GitUnavailableError",
    "InvalidFileError",
    "InvalidPathError",
    "InvalidWorkspaceError",
    "PathConflictError",
    "SearchHit",
    "SqlVersionStore",
    "UnknownRemoteError",
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
