"""Checks on file content and the unified diffs stored with each version."""

from __future__ import annotations

import difflib
import hashlib

from workspace.errors import BinaryContentError, FileTooLargeError

__all__ = ["check_content", "sha256_hex", "unified_diff"]

_NO_NEWLINE = "\\ No newline at end of file\n"


def check_content(content: str, max_bytes: int) -> bytes:
    """Return the UTF-8 bytes of ``content`` after checking it is storable text under the cap.

    Raises:
        BinaryContentError: not a string, a NUL byte, or not encodable as UTF-8 (lone surrogates).
        FileTooLargeError: over ``max_bytes`` bytes of UTF-8.
    """
    if not isinstance(content, str):
        raise BinaryContentError(f"content must be text (str), got {type(content).__name__}")
    if "\x00" in content:
        raise BinaryContentError("content contains a NUL byte: only text files can be stored")
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BinaryContentError(f"content is not valid UTF-8 text: {exc.reason}") from exc
    if len(data) > max_bytes:
        raise FileTooLargeError(f"content is {len(data)} bytes; the maximum is {max_bytes} bytes")
    return data


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _lines(text: str) -> list[str]:
    # Split on "\n" only: str.splitlines also splits on \r, \f, \u2028..., which patch does not.
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def unified_diff(path: str, old: str, new: str) -> str:
    """Return a ``git apply`` / ``patch``-compatible unified diff with ``a/path`` / ``b/path`` headers.

    A last line without a newline gets the ``\\ No newline at end of file`` marker, as git writes it,
    so the diff stays one line per line and applies cleanly. Identical texts give ``""``.
    """
    out: list[str] = []
    for line in difflib.unified_diff(_lines(old), _lines(new), f"a/{path}", f"b/{path}"):
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n")
            out.append(_NO_NEWLINE)
    return "".join(out)
