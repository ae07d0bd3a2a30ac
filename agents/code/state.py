"""The Code Agent's state: what it hands back (:class:`CodeOutput`) and its working fields.

Kept apart from the graph so the approval, report and check modules import the state without
importing the graph (no import circle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph import add_messages

from agents.state import AttemptRecord, CodeResult, RunOutcome, merge_files

__all__ = ["CodeOutput", "CodeState", "Status"]

Status = Literal["working", "passed", "exhausted", "rejected", "error"]


@dataclass(kw_only=True)
class CodeOutput:
    """What the Code Agent hands back to the parent graph."""

    messages: Annotated[Sequence[AnyMessage], add_messages] = field(default_factory=list)
    workspace_id: str | None = None
    files: Annotated[dict[str, str], merge_files] = field(default_factory=dict)
    attempts: int = 0
    last_run: RunOutcome | None = None
    code_result: CodeResult | None = None


@dataclass(kw_only=True)
class CodeState(CodeOutput):
    """The Code Agent's working state (private fields stay inside the subgraph)."""

    task: str = ""
    """The Task Agent's note (an addition to the user's request, never a replacement)."""
    last_path: str | None = None
    """The program of the previous job in this thread ("make it ..." edits that file)."""
    last_kind: str | None = None
    """The app kind of the previous job when it was a hosted app (a follow-up changes the app)."""
    preferred_language: str | None = None
    """The user's remembered language: used when the request names none."""
    request: str = ""
    earlier: str = ""
    language: Literal["python", "typescript", "html"] = "python"
    code_path: str = "main.py"
    tests_path: str = "test_main.py"
    extra_paths: list[str] = field(default_factory=list)
    named_tests: bool = False
    """The user named the tests file: the model writes it with the code (several files, one reply)."""
    pasted: bool = False
    code: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    user_checks: list[str] = field(default_factory=list)
    model_checks: list[str] = field(default_factory=list)
    dropped_checks: list[str] = field(default_factory=list)
    tests: str = ""
    cause: str = ""
    diagnosis: dict[str, Any] | None = None
    history: list[AttemptRecord] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    status: Status = "working"
    error: str = ""
    app_kind: Literal["static", "python"] | None = None
    """Set when the job is a hosted app: the serve step hosts and checks it instead of a run."""
    app_expect: dict[str, Any] = field(default_factory=dict)
    """The user's explicit expectations (``tools.app_probe.AppExpectations`` fields)."""
    app_check: str = ""
    app_id: str = ""
    app_link: str = ""
    app_link_expires_at: float = 0.0
    app_expires_at: float | None = None
    app_checked: list[str] = field(default_factory=list)
