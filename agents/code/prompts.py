"""The Code Agent's prompts and message builders: first draft, assert checks, repair, second prediction.

Every request carries the user's words verbatim (code blocks, docstrings, examples, file names); the
Task Agent's note and earlier turns are additions. The repair request gives the model what a
programmer would look at (failing line and its text, values, failed checks, traceback end) and asks
for the cause in one sentence before the patch.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.code.diagnosis import Diagnosis, render_diagnosis

__all__ = [
    "CODE_SYSTEM",
    "FENCES",
    "PREDICT_SYSTEM",
    "REPAIR_INSTRUCTIONS",
    "TESTS_SYSTEM",
    "draft_messages",
    "repair_messages",
    "request_part",
    "sampling_for",
    "tests_messages",
]

CODE_SYSTEM = """You write small, complete {language} programs.
Reply with the whole program in ONE ```{fence} code block.
Keep the function names, signatures and behaviour the request specifies (docstrings and examples are the \
specification).
The program must run as it is: no input(), no network, print its results."""

TESTS_SYSTEM = """You write tests. Given a task and a Python program, write 3 to 5 small assert statements \
that check the program's functions do what the task asks.
Reply with ONE ```python block containing only assert lines. The program's functions are already \
defined: do not import or redefine them."""

REPAIR_INSTRUCTIONS = """First write one sentence starting with "Cause:" that says why it fails.
Then give the complete corrected program in ONE ```{fence} code block."""

PREDICT_SYSTEM = """You compute values precisely. Work it out carefully; do not write a program."""

FENCES = {"python": "python", "typescript": "typescript"}
_NAMES = {"python": "Python 3", "typescript": "TypeScript (Deno)"}


def sampling_for(attempt: int, resample: int = 0) -> tuple[float, int | None]:
    """Temperature and seed of an attempt's ``resample``-th sample.

    The first draft is greedy (reproducible); repairs and resamples (after a reply without code or
    with unchanged code) sample between 0.3 and 0.6, warmer and with a new seed each time, so a
    resample is a different draw rather than the same answer again.
    """
    if attempt <= 1 and resample == 0:
        return 0.0, None
    step = max(attempt - 2, 0) + resample
    return min(0.3 + 0.15 * step, 0.6), 1000 + 10 * attempt + resample


def _system(language: str) -> SystemMessage:
    return SystemMessage(CODE_SYSTEM.format(language=_NAMES[language], fence=FENCES[language]))


def request_part(request: str, note: str = "", earlier: str = "") -> str:
    """The user's request verbatim, with earlier turns before it and the Task Agent's note after."""
    parts = []
    if earlier:
        parts.append(f"Earlier in this conversation:\n{earlier}")
    parts.append(f"The user's request:\n{request.strip()}")
    if note and note.strip() and note.strip() not in request:
        parts.append(f"Note from the Task Agent: {note.strip()}")
    return "\n\n".join(parts)


def draft_messages(
    request: str,
    language: str,
    path: str,
    current: str | None,
    *,
    note: str = "",
    earlier: str = "",
    checks: list[str] | None = None,
    pasted: bool = False,
    also: list[str] | None = None,
) -> list[BaseMessage]:
    """Ask for the first version of ``path`` (or a change to its current content when there is one)."""
    fence = FENCES[language]
    body = request_part(request, note, earlier)
    if current and pasted:
        body += f"\n\nThe code in the request is saved as {path}. Reply with the whole new {path}."
    elif current:
        body += (
            f"\n\nCurrent content of {path}:\n```{fence}\n{current.rstrip()}\n```\n"
            f"Change it as the request asks. Reply with the whole new {path}."
        )
    elif also:
        names = " and ".join([path, *also])
        body += (
            f"\n\nWrite the files {names}, each in its own code block with its file name on the line "
            "before the block."
        )
    else:
        body += f"\n\nWrite the file {path}."
    if checks:
        body += "\nThese checks from the user's examples must pass:\n" + "\n".join(checks)
    return [_system(language), HumanMessage(body)]


def tests_messages(request: str, code: str) -> list[BaseMessage]:
    """Ask for a few assert checks of the program."""
    return [
        SystemMessage(TESTS_SYSTEM),
        HumanMessage(f"Task: {request}\n\nProgram:\n```python\n{code.rstrip()}\n```"),
    ]


def repair_messages(
    request: str,
    language: str,
    path: str,
    code: str,
    diagnosis: Diagnosis | None,
    note: str = "",
    *,
    earlier: str = "",
) -> list[BaseMessage]:
    """Ask for a patch, giving the facts of the failure rather than the raw log only."""
    fence = FENCES[language]
    facts = render_diagnosis(diagnosis) if diagnosis is not None else note
    body = (
        f"{request_part(request, earlier=earlier)}\n\n"
        f"The program {path}:\n```{fence}\n{code.rstrip()}\n```\n\n"
        f"It failed.\n{facts}\n\n{REPAIR_INSTRUCTIONS.format(fence=fence)}"
    )
    return [_system(language), HumanMessage(body)]
