"""Normalise and validate file paths inside a workspace.

Paths are stored in one canonical form so ``a//b/./c`` and ``a/b/c`` name the same file, and so a
path can never point outside the workspace when files are materialised into a sandbox.
"""

from __future__ import annotations

from workspace.errors import InvalidPathError

__all__ = ["MAX_PATH_LENGTH", "MAX_SEGMENT_LENGTH", "normalise_path"]

MAX_PATH_LENGTH = 512
MAX_SEGMENT_LENGTH = 255  # the usual file-system limit for one name


def normalise_path(path: str, *, max_length: int = MAX_PATH_LENGTH) -> str:
    """Return the canonical form of a workspace-relative path.

    Empty segments and ``.`` are dropped (``a//b/./c/`` -> ``a/b/c``). Refused, because each could
    escape the workspace or break a diff header: absolute paths, ``..``, backslashes (a Windows
    separator: ``..\\x`` would escape when materialised there), NUL and other control characters,
    empty paths, and paths or names over the length caps.

    Raises:
        InvalidPathError: with a message saying what to fix.
    """
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a string, got {type(path).__name__}")
    if "\x00" in path:
        raise InvalidPathError("path contains a NUL byte")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise InvalidPathError(f"path contains a control character: {path!r}")
    if "\\" in path:
        raise InvalidPathError(f"path contains a backslash; use '/' as the separator: {path!r}")
    if path.startswith("/"):
        raise InvalidPathError(f"path must be relative to the workspace, not absolute: {path!r}")
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            raise InvalidPathError(f"path must not contain '..': {path!r}")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidPathError(f"a path segment is over {MAX_SEGMENT_LENGTH} characters")
        parts.append(segment)
    if not parts:
        raise InvalidPathError("path is empty")
    result = "/".join(parts)
    if len(result) > max_length:
        raise InvalidPathError(f"path is {len(result)} characters long; the maximum is {max_length}")
    return result
