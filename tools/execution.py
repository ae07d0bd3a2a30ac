"""Run workspace files in a sandbox and describe the outcome in words a model can use.

Shared by the ``run_code`` tool and the Code Agent, so both pick the resource tier the same way
(``sandbox.resources.choose_tier``) and report runs in the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import PurePosixPath

from sandbox.base import Language, RunRequest, RunResult, Sandbox
from sandbox.resources import Tier, choose_tier, resolve_limits

__all__ = ["format_run", "language_of", "run_program", "tail"]

logger = logging.getLogger(__name__)

_SUFFIXES: dict[str, Language] = {".py": "python", ".ts": "typescript", ".mts": "typescript"}


def language_of(path: str) -> Language | None:
    """Guess the language from the file suffix (None for anything we cannot run)."""
    return _SUFFIXES.get(PurePosixPath(path).suffix.lower())


async def run_program(
    sandbox: Sandbox,
    *,
    files: Mapping[str, str],
    entry: str,
    language: Language,
    library_set: str = "base",
    tier: Tier | None = None,
) -> tuple[RunResult, Tier]:
    """Run ``entry`` with ``files`` in the sandbox at the tier the Resource Manager picks.

    Returns:
        The run result and the tier used.

    Raises:
        SandboxError: the backend could not run it (the program failing is a result, not an error).
    """
    code_size = sum(len(text) for text in files.values())
    chosen = choose_tier(code_size=code_size, library_set=library_set, declared=tier)
    limits = resolve_limits(chosen)
    request = RunRequest(
        files=dict(files), language=language, entry=entry, limits=limits, library_set=library_set
    )
    logger.debug("running %s (%s, tier %s) in %s", entry, language, chosen, sandbox.name)
    return await sandbox.run(request), chosen


def tail(text: str, max_chars: int) -> str:
    """Keep the end of ``text`` (errors are at the end), marking the cut."""
    if len(text) <= max_chars:
        return text
    return "[... cut ...]\n" + text[-max_chars:]


def format_run(result: RunResult, *, max_chars: int = 3000) -> str:
    """Describe a run for a model: exit status, then the ends of stdout and stderr."""
    status = "succeeded" if result.ok else "failed"
    lines = [
        f"Run {status}: exit code {result.exit_code}, ended by {result.reason.value}, "
        f"{result.duration_s:.2f} s on {result.backend or 'sandbox'}."
    ]
    if result.stdout:
        lines.append("stdout:\n" + tail(result.stdout, max_chars))
    if result.stderr:
        lines.append("stderr:\n" + tail(result.stderr, max_chars))
    if result.stdout_truncated or result.stderr_truncated:
        lines.append("(output was truncated at the sandbox's cap)")
    return "\n".join(lines)
