"""Errors raised by version stores.

    WorkspaceError
    ├── WorkspaceNotFoundError
    ├── FileNotFoundInWorkspaceError
    ├── VersionNotFoundError
    ├── InvalidWorkspaceError   empty or over-long workspace name / tenant
    ├── InvalidFileError
    │   ├── InvalidPathError        absolute, '..', NUL byte, empty, too long
    │   ├── PathConflictError       a file would also be a directory ('a' and 'a/b')
    │   ├── FileTooLargeError       content over the configured cap
    │   └── BinaryContentError      content is not valid UTF-8 text
    └── GitExportError          publishing a workspace's history to a git remote failed
        ├── UnknownRemoteError      no remote of that name (for this tenant) in the operator's settings
        ├── ExportRejectedError     the remote's branch moved on (not a fast-forward); export again
        ├── GitUnavailableError     no usable ``git`` on this host
        ├── GitTimeoutError         a git command outlived the remote's timeout
        └── GitRemoteError          the remote refused or could not be reached (details in the log)

Only ``server/`` maps these to HTTP status codes (404 for the *NotFound ones, 409 for a path
conflict, 400/413/415 for the rest; for git export 400 unknown remote, 409 rejected, 502 remote
error, 503 no git, 504 timeout).
"""

from __future__ import annotations

__all__ = [
    "BinaryContentError",
    "ExportRejectedError",
    "FileNotFoundInWorkspaceError",
    "FileTooLargeError",
    "GitExportError",
    "GitRemoteError",
    "GitTimeoutError",
    "GitUnavailableError",
    "InvalidFileError",
    "InvalidPathError",
    "InvalidWorkspaceError",
    "PathConflictError",
    "UnknownRemoteError",
    "VersionNotFoundError",
    "WorkspaceError",
    "WorkspaceNotFoundError",
]


class WorkspaceError(Exception):
    """Base of all workspace errors."""


class WorkspaceNotFoundError(WorkspaceError):
    """No such workspace (for this tenant)."""


class FileNotFoundInWorkspaceError(WorkspaceError):
    """No such file in the workspace."""


class VersionNotFoundError(WorkspaceError):
    """No such version of the file."""


class InvalidWorkspaceError(WorkspaceError):
    """The workspace name or tenant is not acceptable; the message says what to fix."""


class InvalidFileError(WorkspaceError):
    """The path or content is not acceptable; the message says what to fix."""


class InvalidPathError(InvalidFileError):
    """The path is absolute, escapes the workspace, contains NUL, or is empty."""


class PathConflictError(InvalidFileError):
    """The path clashes with an existing file: ``a/b`` when ``a`` is a file, or ``a`` when ``a/b`` is one.

    A sandbox materialises the workspace as a directory tree, where one name cannot be both a file
    and a directory; storing both would make every later run in the workspace fail.
    """


class FileTooLargeError(InvalidFileError):
    """The content is over the size cap."""


class BinaryContentError(InvalidFileError):
    """The content is not UTF-8 text."""


class GitExportError(WorkspaceError):
    """Publishing a workspace's history to a git remote failed; the message says why."""


class UnknownRemoteError(GitExportError):
    """The client named a remote the operator has not configured (or not allowed for its tenant)."""


class ExportRejectedError(GitExportError):
    """The remote's branch no longer ends where the export started (another push came first)."""


class GitUnavailableError(GitExportError):
    """``git`` is not installed or does not run on this host."""


class GitTimeoutError(GitExportError):
    """A git command (fetch, fast-import, push) outlived the remote's timeout and was killed."""


class GitRemoteError(GitExportError):
    """The remote refused the push or could not be reached; the server log holds git's own words."""
