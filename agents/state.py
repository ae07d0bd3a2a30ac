"""Graph state: the conversation plus *references* to file versions, never file contents.

Because ``files`` maps each path to the version id the agents last saw, every checkpoint pins the
exact files of its moment: resuming or forking from it reads those versions back from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph import add_messages
from typing_extensions import TypedDict

__all__ = [
    "AttemptRecord",
    "CodeResult",
    "InputState",
    "Route",
    "RunOutcome",
    "SearchNote",
    "State",
    "add_unique",
    "merge_files",
]

Route = Literal["code", "search", "summarize", "answer", "done"]


class RunOutcome(TypedDict, total=False):
    """What the Code Agent's last run did (also the payload of its ``custom`` stream events)."""

    attempt: int
    passed: bool
    exit_code: int
    reason: str
    error_class: str | None
    error_line: int | None
    duration_s: float
    checks_failed: int
    checks_total: int
    version_ids: list[str]
    tier: str
    summary: str
    app_id: str
    """The app this attempt hosted (app attempts only)."""
    check: str
    """The browser check of an app attempt: ``passed`` or ``failed``."""


class AttemptRecord(RunOutcome, total=False):
    """One Code Agent attempt, kept to pick the best one at the end."""

    code: str
    output: str
    printed: str
    """What the program itself printed (stdout before the checks), verbatim."""


class CodeResult(TypedDict, total=False):
    """The Code Agent's outcome, the facts the final reply is built from (never model text)."""

    status: Literal["passed", "failed", "rejected", "error"]
    path: str
    version_id: str
    language: str
    attempts: int
    max_attempts: int
    attempt: int
    """The attempt whose code is the result."""
    code: str
    printed: str
    error: str
    checks_total: int
    checks_failed: int
    user_checks: int
    dropped_checks: list[str]
    files: list[str]
    app_kind: str
    """``static`` or ``python`` when the job was a hosted app (the fields below then tell its fate)."""
    app_check: Literal["passed", "failed", "not_hosted", "unchecked"]
    app_id: str
    app_link: str
    """A signed link that opens the app (set only while the app runs)."""
    app_link_expires_at: float
    app_expires_at: float | None
    app_checked: list[str]
    """What the browser check did and saw (its steps), for the reply."""


class SearchNote(TypedDict):
    """One search result kept for later steps, with where it came from."""

    query: str
    title: str
    source: str
    snippet: str


def merge_files(current: dict[str, str] | None, update: dict[str, str] | None) -> dict[str, str]:
    """Merge path -> version id references (later writes win per path)."""
    return {**(current or {}), **(update or {})}


def add_unique(current: list[str] | None, update: list[str] | None) -> list[str]:
    """Append ids not seen before, keeping order."""
    merged = list(current or [])
    merged.extend(item for item in (update or []) if item not in merged)
    return merged


def _add_notes(current: list[SearchNote] | None, update: list[SearchNote] | None) -> list[SearchNote]:
    seen = {(n["query"], n["source"]) for n in current or []}
    merged = list(current or [])
    merged.extend(n for n in update or [] if (n["query"], n["source"]) not in seen)
    return merged


@dataclass(kw_only=True)
class InputState:
    """What a client sends: messages, optionally the workspace to work in."""

    messages: Annotated[Sequence[AnyMessage], add_messages] = field(default_factory=list)
    workspace_id: str | None = None


@dataclass(kw_only=True)
class State(InputState):
    """The full state of the agent graph."""

    route: Route | None = None
    """The Task Agent's last decision."""
    task: str = ""
    """The Task Agent's note to the specialist (an addition to the user's words, never a replacement)."""
    steps: int = 0
    """Task Agent decisions in the current user turn."""
    files: Annotated[dict[str, str], merge_files] = field(default_factory=dict)
    """Path -> version id of every file the agents have seen or written."""
    attempts: int = 0
    """Code Agent attempts in its last job."""
    last_run: RunOutcome | None = None
    code_result: CodeResult | None = None
    """What the Code Agent's last job ended with (the final reply quotes it)."""
    search_notes: Annotated[list[SearchNote], _add_notes] = field(default_factory=list)
    app_ids: Annotated[list[str], add_unique] = field(default_factory=list)
    """Hosted apps started for this conversation."""
    preferences: dict[str, str] = field(default_factory=dict)
    """The user's remembered preferences (``agents.memory``), read at the start of each turn."""
