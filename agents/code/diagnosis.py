"""Read a failed run's log the way a programmer would, for the repair prompt.

From stdout / stderr and the sources it extracts the error class and message, the failing line
number *and the text of that line*, a short traceback excerpt, the local values the runner printed,
the values of both sides of a failing ``assert``, the end of the program's printed output (often the
clearest sign of what is wrong), and the failed assert checks. Handles Python tracebacks and Deno
(TypeScript) errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.code.harness import ASSERT_MARKER, CHECKS_MARKER
from sandbox.base import EndReason, RunResult

__all__ = ["Diagnosis", "diagnose", "render_diagnosis"]

_PY_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)')
_PY_ERROR = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration)\w*)(?::\s*(.*))?$"
)
_TS_ERROR = re.compile(r"(?:error:\s*)?(?:Uncaught\s*(?:\(in promise\)\s*)?)?([A-Z]\w*Error)\b:?\s*(.*)")
_TS_PLACE = re.compile(r"([\w./-]+\.(?:ts|mts|tsx|js)):(\d+):(\d+)")
_LOCAL = re.compile(r"^\s{4}(\w+) = (.*)$")
_CHECK = re.compile(r"^CHECK (\d+) (PASS|FAIL): (.*)$")
_CHECKS_SUMMARY = re.compile(r"^CHECKS: (\d+)/(\d+) passed")
_OUTPUT_LINES, _OUTPUT_CHARS = 12, 1200


@dataclass(frozen=True, kw_only=True)
class Diagnosis:
    """What went wrong in one run (all fields optional: logs vary)."""

    passed: bool
    error_class: str | None = None
    message: str = ""
    path: str | None = None
    line: int | None = None
    line_text: str | None = None
    traceback_excerpt: str = ""
    local_values: dict[str, str] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    checks_total: int = 0
    checks_failed: int = 0
    assert_values: str = ""
    output: str = ""


def _python(stderr: str, sources: Mapping[str, str]) -> tuple[str | None, str, str | None, int | None, str]:
    lines = stderr.splitlines()
    path: str | None = None
    line: int | None = None
    error_class: str | None = None
    message = ""
    start = next((i for i, t in enumerate(lines) if t.startswith("Traceback") or _PY_FRAME.match(t)), None)
    for text in lines:
        frame = _PY_FRAME.match(text)
        if frame and frame.group(1).split("/")[-1] in sources:
            path, line = frame.group(1).split("/")[-1], int(frame.group(2))
    for text in reversed(lines):
        found = _PY_ERROR.match(text.strip())
        if found:
            error_class, message = found.group(1).split(".")[-1], (found.group(2) or "").strip()
            break
    end = next(
        (i for i, t in enumerate(lines) if t.startswith(("Local values in", ASSERT_MARKER))), len(lines)
    )
    excerpt_lines = lines[start:end] if start is not None else lines[-8:]
    return error_class, message, path, line, "\n".join(excerpt_lines[-12:])


def _typescript(text: str, sources: Mapping[str, str]) -> tuple[str | None, str, str | None, int | None, str]:
    error_class: str | None = None
    message = ""
    path: str | None = None
    line: int | None = None
    for row in text.splitlines():
        if error_class is None:
            found = _TS_ERROR.search(row)
            if found:
                error_class, message = found.group(1), found.group(2).strip()
        place = _TS_PLACE.search(row)
        if place and path is None and place.group(1).split("/")[-1] in sources:
            path, line = place.group(1).split("/")[-1], int(place.group(2))
    if error_class is None and "could not be parsed" in text:
        error_class = "SyntaxError"
        message = text.strip().splitlines()[0][:300]
    excerpt = "\n".join(text.strip().splitlines()[:10])
    return error_class, message, path, line, excerpt


def diagnose(result: RunResult, sources: Mapping[str, str], language: str) -> Diagnosis:
    """Extract the failure facts from ``result`` (``sources`` maps file name -> code)."""
    stdout = result.stdout
    checks_part = stdout.split(CHECKS_MARKER, 1)[1] if CHECKS_MARKER in stdout else ""
    failed_checks: list[str] = []
    total = failed = 0
    for row in checks_part.splitlines():
        check = _CHECK.match(row)
        if check and check.group(2) == "FAIL":
            failed_checks.append(check.group(3))
        summary = _CHECKS_SUMMARY.match(row)
        if summary:
            total = int(summary.group(2))
            failed = total - int(summary.group(1))
    if checks_part and not total and failed_checks:
        total = failed = len(failed_checks)
    if result.ok:
        return Diagnosis(passed=True, checks_total=total, checks_failed=failed)
    if language == "python":
        error_class, message, path, line, excerpt = _python(result.stderr, sources)
    else:
        error_class, message, path, line, excerpt = _typescript(result.stderr + "\n" + stdout, sources)
    if result.reason is EndReason.TIMEOUT:
        error_class, message = (
            "Timeout",
            "the program ran past its time limit (an endless loop or waiting for input?)",
        )
    elif result.reason is EndReason.OOM:
        error_class, message = "MemoryError", "the program ran out of memory"
    elif error_class is None and failed_checks:
        error_class, message = "AssertionError", f"{failed} of {total} checks failed"
    line_text = None
    if path is not None and line is not None:
        source_lines = sources.get(path, "").splitlines()
        if 0 < line <= len(source_lines):
            line_text = source_lines[line - 1].strip()
    local_values: dict[str, str] = {}
    assert_values = ""
    for row in result.stderr.splitlines():
        found = _LOCAL.match(row)
        if found:
            local_values[found.group(1)] = found.group(2)
        elif row.startswith(ASSERT_MARKER):
            assert_values = row[len(ASSERT_MARKER) :].strip()
    if error_class == "AssertionError" and assert_values and not message:
        message = assert_values
    return Diagnosis(
        passed=False,
        error_class=error_class or ("ExitCode" if result.exit_code else None),
        message=message or (f"exit code {result.exit_code}" if result.exit_code else ""),
        path=path,
        line=line,
        line_text=line_text,
        traceback_excerpt=excerpt,
        local_values=local_values,
        failed_checks=failed_checks,
        checks_total=total,
        checks_failed=failed,
        assert_values=assert_values,
        output=_printed(stdout.split(CHECKS_MARKER, 1)[0]),
    )


def _printed(stdout: str) -> str:
    """The end of what the program printed, bounded so a chatty program cannot flood the prompt."""
    rows = stdout.rstrip().splitlines()[-_OUTPUT_LINES:]
    text = "\n".join(rows)
    return text if len(text) <= _OUTPUT_CHARS else "..." + text[-_OUTPUT_CHARS:]


def render_diagnosis(diagnosis: Diagnosis) -> str:
    """The diagnosis as the facts section of a repair prompt."""
    parts = [f"Error: {diagnosis.error_class or 'failure'}: {diagnosis.message}".rstrip(": ")]
    if diagnosis.line is not None:
        where = f"Failing line {diagnosis.line} of {diagnosis.path}"
        parts.append(f"{where}: {diagnosis.line_text}" if diagnosis.line_text else where)
    if diagnosis.assert_values and diagnosis.assert_values != diagnosis.message:
        parts.append(f"Assert values: {diagnosis.assert_values}")
    if diagnosis.local_values:
        values = ", ".join(f"{k} = {v}" for k, v in diagnosis.local_values.items())
        parts.append(f"Values at that moment: {values}")
    if diagnosis.failed_checks:
        parts.append("Failed checks:\n" + "\n".join(f"- {c}" for c in diagnosis.failed_checks[:6]))
    if diagnosis.traceback_excerpt:
        parts.append("Traceback (end):\n" + diagnosis.traceback_excerpt)
    parts.append(
        "The program printed:\n" + diagnosis.output if diagnosis.output else "The program printed nothing."
    )
    return "\n".join(parts)
