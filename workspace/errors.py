"""Errors raised by version stores.

    WorkspaceError
    ├── WorkspaceNotFoundError
    ├── FileNotFoundInWorkspaceError
    ├── VersionNotFoundError
    ├── InvalidWorkspaceError   empty or over-long workspace name / tenant
    └── InvalidFileError
        ├── InvalidPathError        absolute, '..', NUL byte, empty, too long
        ├── PathConflictError       a file would also be a directory ('a' and 'a/b')
        ├── FileTooLargeError       content over the configured cap
        └── BinaryContentError      content is not valid UTF-8 text

Only ``server/`` maps these to HTTP status codes (404 for the *NotFound ones, 409 for a path
conflict, 400/413/415 for the rest).
"""

from __future__ import annotations

__all__ = [
    "BinaryContentError",
    "FileNotFoundInWorkspaceError",
    "FileTooLargeError",
    "InvalidFileError",
    "InvalidPathError",
    "InvalidWorkspaceError",
    "PathConflictError",
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
