"""Message builders of the Code Agent: first draft, assert checks, and the repair request.

The repair request gives the model what a programmer would look at (failing line and its text,
values, failed checks, traceback end) and asks for the cause in one sentence before the patch.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.diagnose import Diagnosis, render_diagnosis
from agents.prompts import CODE_SYSTEM, REPAIR_INSTRUCTIONS, TESTS_SYSTEM

__all__ = ["FENCES", "draft_messages", "repair_messages", "sampling_for", "tests_messages"]

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


def draft_messages(task: str, language: str, path: str, current: str | None) -> list[BaseMessage]:
    """Ask for the first version (or a change to the current file when there is one)."""
    fence = FENCES[language]
    if current:
        body = (
            f"Task: {task}\n\nCurrent content of {path}:\n```{fence}\n{current.rstrip()}\n```\n"
            "Change it as asked."
        )
    else:
        body = f"Task: {task}"
    return [_system(language), HumanMessage(body)]


def tests_messages(task: str, code: str) -> list[BaseMessage]:
    """Ask for a few assert checks of the program."""
    return [
        SystemMessage(TESTS_SYSTEM),
        HumanMessage(f"Task: {task}\n\nProgram:\n```python\n{code.rstrip()}\n```"),
    ]


def repair_messages(
    task: str, language: str, path: str, code: str, diagnosis: Diagnosis | None, note: str = ""
) -> list[BaseMessage]:
    """Ask for a patch, giving the facts of the failure rather than the raw log only."""
    fence = FENCES[language]
    facts = render_diagnosis(diagnosis) if diagnosis is not None else note
    body = (
        f"Task: {task}\n\nThe program {path}:\n```{fence}\n{code.rstrip()}\n```\n\n"
        f"It failed.\n{facts}\n\n{REPAIR_INSTRUCTIONS.format(fence=fence)}"
    )
    return [_system(language), HumanMessage(body)]
