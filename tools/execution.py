"""Run workspace files in a sandbox and describe the outcome in words a model can use.

Shared by the ``run_code`` tool and the Code Agent, so both plan runs the same way as REST runs and
``agentic run`` (:func:`sandbox.plan.plan_run`: one language table, tier, limits, sizes checked
first) and report runs in the same shape. The server's maximums are held by the guard in front of
the sandbox the run context carries (:mod:`sandbox.guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import trace

from sandbox.base import Language, RunRequest, RunResult, Sandbox
from sandbox.plan import language_of, plan_run
from sandbox.resources import Tier

__all__ = ["format_run", "language_of", "run_program", "tail"]

logger = logging.getLogger(__name__)
# The API's tracer: a no-op unless the server installed an SDK (tracing on); the graph never imports server.
_tracer = trace.get_tracer("agentic.tools")


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

    The run is a ``sandbox.run`` span of the current trace (the node's, when the server traces).

    Returns:
        The run result and the tier used.

    Raises:
        SandboxError: the backend could not run it (the program failing is a result, not an error).
    """
    code_size = sum(len(text.encode()) for text in files.values())
    plan = plan_run(code_size=code_size, file_count=len(files), library_set=library_set, tier=tier)
    chosen, limits = plan.tier, plan.limits
    request = RunRequest(
        files=dict(files), language=language, entry=entry, limits=limits, library_set=library_set
    )
    logger.debug("running %s (%s, tier %s) in %s", entry, language, chosen, sandbox.name)
    attributes = {"sandbox.language": language, "sandbox.entry": entry, "sandbox.tier": chosen}
    with _tracer.start_as_current_span("sandbox.run", attributes=attributes) as span:
        result = await sandbox.run(request)
        if span.is_recording():
            span.set_attribute("sandbox.backend", result.backend or sandbox.name)
            span.set_attribute("sandbox.exit_code", result.exit_code)
            span.set_attribute("sandbox.end_reason", str(result.reason))
            span.set_attribute("sandbox.duration_s", result.duration_s)
    return result, chosen


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
