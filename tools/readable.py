"""Turn exceptions raised inside tools into short messages a model can act on.

A model cannot read a stack trace usefully, and an exception escaping a tool would end the run, so
every tool body runs under :func:`readable_errors`: known errors become ``"Error: ..."`` text with a
hint, anything else is logged with its traceback and reported in one line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from sandbox.errors import SandboxError
from tools.search_backends import SearchUnavailableError
from workspace.errors import (
    FileNotFoundInWorkspaceError,
    InvalidFileError,
    VersionNotFoundError,
    WorkspaceError,
)

__all__ = ["MissingWorkspaceError", "describe_error", "readable_errors"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class MissingWorkspaceError(Exception):
    """The conversation has no workspace yet."""


def describe_error(exc: BaseException) -> str:
    """One readable line for ``exc``, with a hint on what to try next."""
    if isinstance(exc, FileNotFoundInWorkspaceError):
        return f"Error: {exc}. Use list_files to see which files exist."
    if isinstance(exc, VersionNotFoundError):
        return f"Error: {exc}. Use file_history to see the versions of this file."
    if isinstance(exc, InvalidFileError):
        return f"Error: {exc}. Use a relative path such as 'main.py' and UTF-8 text."
    if isinstance(exc, WorkspaceError):
        return f"Error: workspace problem: {exc}"
    if isinstance(exc, SandboxError):
        return f"Error: the sandbox could not run this: {exc}"
    if isinstance(exc, SearchUnavailableError):
        return f"Error: {exc}. Continue without web results."
    if isinstance(exc, MissingWorkspaceError):
        return f"Error: {exc}"
    if isinstance(exc, ValueError):
        return f"Error: invalid argument: {exc}"
    return f"Error: {type(exc).__name__}: {exc}"


def readable_errors(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | str]]:
    """Wrap an async tool body so failures come back as text instead of exceptions."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | str:
        try:
            return await func(*args, **kwargs)
        except (
            WorkspaceError,
            SandboxError,
            SearchUnavailableError,
            MissingWorkspaceError,
            ValueError,
        ) as exc:
            logger.info("tool %s failed: %s", func.__name__, exc)
            return describe_error(exc)
        except Exception as exc:
            logger.exception("tool %s failed unexpectedly", func.__name__)
            return describe_error(exc)

    return wrapper
