"""Request bodies of the Agent Protocol subset, as ``langgraph-sdk`` 0.4 sends them.

Unknown fields are ignored (``extra="ignore"``) so newer clients keep working; fields we accept
but do not act on are listed in the module's README section of the report (webhook, feedback_keys).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from server.schemas import MAX_INT64, check_json_value

__all__ = [
    "JsonBody",
    "AssistantCreate",
    "AssistantPatch",
    "AssistantSearch",
    "AssistantVersionChange",
    "AssistantVersionsSearch",
    "CheckpointRef",
    "CommandIn",
    "EventId",
    "HistoryRequest",
    "RunCreate",
    "StateCheckpointRequest",
    "StateUpdate",
    "ThreadCount",
    "ThreadCreate",
    "ThreadPatch",
    "ThreadPrune",
    "ThreadSearch",
]

StreamModeName = Literal[
    "values", "messages", "messages-tuple", "updates", "custom", "debug", "checkpoints", "tasks", "events"
]


def _check_event_id(value: str | None) -> str | None:
    """An event id that is a number must fit in 64 bits (the events table's ``seq``); others replay all."""
    try:
        number = int(value) if value is not None else 0
    except ValueError:
        return value
    if abs(number) > MAX_INT64:
        raise ValueError(f"an event id is a number of at most {MAX_INT64}")
    return value


EventId = Annotated[str | None, AfterValidator(_check_event_id)]
"""The ``Last-Event-ID`` a client rejoins a stream with."""


class JsonBody(BaseModel):
    """A request body stored as JSON (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Metadata, input and values are stored as JSON: integers past 64 bits are refused (422)."""
        return check_json_value(data)


class CheckpointRef(JsonBody):
    """Points at one checkpoint of a thread (time travel)."""

    thread_id: str | None = None
    checkpoint_ns: str = ""
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class CommandIn(JsonBody):
    """``Command`` of LangGraph: resume an interrupt, update state, or jump to a node."""

    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(JsonBody):
    """``POST /threads/{id}/runs[/stream|/wait]``."""

    assistant_id: str
    input: Any = None
    command: CommandIn | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: StreamModeName | list[StreamModeName] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_disconnect: Literal["cancel", "continue"] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    """Stateless runs only: delete the thread made for the run when it ends (default) or keep it."""

    def modes(self) -> list[str]:
        """The requested stream modes as a list."""
        return [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)


class ThreadCreate(JsonBody):
    """``POST /threads``."""

    thread_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadPatch(JsonBody):
    """``PATCH /threads/{id}``: metadata is merged into the existing one."""

    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(JsonBody):
    """``POST /threads/search``."""

    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    ids: list[str] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_INT64)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"


class ThreadCount(JsonBody):
    """``POST /threads/count``."""

    metadata: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None


class HistoryRequest(JsonBody):
    """``POST /threads/{id}/history``."""

    limit: int = Field(default=10, ge=1, le=1000)
    before: str | CheckpointRef | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None


class StateCheckpointRequest(JsonBody):
    """``POST /threads/{id}/state/checkpoint``."""

    checkpoint: CheckpointRef
    subgraphs: bool = False


class StateUpdate(JsonBody):
    """``POST /threads/{id}/state``: ``values`` maps state keys (an object), ``as_node`` names a node."""

    values: dict[str, Any] | None = None
    as_node: str | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None


AssistantField = Literal[
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "created_at",
    "updated_at",
    "metadata",
    "version",
]


class AssistantSearch(JsonBody):
    """``POST /assistants/search`` (``name`` matches a part of the name, any case)."""

    graph_id: str | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_INT64)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[AssistantField] | None = None


def _uuid(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("assistant_id must be a UUID (or leave it out to get a new one)") from None


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[str | None, AfterValidator(_no_nul)]
"""A stored text column: Postgres keeps no NUL character in text."""


class _AssistantFields(JsonBody):
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    description: Text = Field(default=None, max_length=4096)


class AssistantCreate(_AssistantFields):
    """``POST /assistants``."""

    graph_id: str = Field(min_length=1, max_length=128)
    assistant_id: Annotated[str | None, AfterValidator(_uuid)] = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: Text = Field(default=None, max_length=256)


class AssistantPatch(_AssistantFields):
    """``PATCH /assistants/{id}``: a new version; fields left out keep their value, metadata is merged."""

    graph_id: str | None = Field(default=None, min_length=1, max_length=128)
    name: Text = Field(default=None, min_length=1, max_length=256)


class AssistantVersionsSearch(JsonBody):
    """``POST /assistants/{id}/versions``."""

    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_INT64)


class AssistantVersionChange(JsonBody):
    """``POST /assistants/{id}/latest``."""

    version: int = Field(ge=1, le=MAX_INT64)


class ThreadPrune(JsonBody):
    """``POST /threads/prune``: ``delete`` removes the threads, ``keep_latest`` their older checkpoints."""

    thread_ids: list[str] = Field(max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"

    @field_validator("thread_ids")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any("\x00" in v for v in value):
            raise ValueError("a thread id must not contain a NUL character")
        return list(dict.fromkeys(value))
