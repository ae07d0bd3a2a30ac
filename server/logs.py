"""Structured logs: every record carries the tenant, thread and run it was written for.

The ids live in context variables (:func:`bind`), set by the auth dependency (tenant) and by the
run manager's task (thread, run); asyncio copies them into tasks, so a log line deep in a tool
still says which run it belongs to. :func:`configure_logging` is called once, by ``agentic serve``:
importing this module configures nothing.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal

__all__ = ["ContextFilter", "JsonFormatter", "bind", "bound", "configure_logging", "current"]

_FIELDS = ("tenant", "thread_id", "run_id")
_vars: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"agentic_{name}", default=None) for name in _FIELDS
}


def bind(**ids: str | None) -> None:
    """Set ``tenant`` / ``thread_id`` / ``run_id`` for the rest of the current task."""
    for name, value in ids.items():
        _vars[name].set(value)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Set ids for a block, then restore the previous ones."""
    tokens = [(name, _vars[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for name, token in reversed(tokens):
            _vars[name].reset(token)


def current() -> dict[str, str]:
    """The ids bound now (unset ones left out)."""
    return {name: value for name, var in _vars.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Copy the bound ids onto each record (as attributes, for any formatter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound ids, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{n}={getattr(record, n)}" for n in _FIELDS if getattr(record, n, None))
        return f"{line} [{ids}]" if ids else line


def configure_logging(level: str, fmt: Literal["json", "text"] = "json") -> None:
    """Send every logger (uvicorn's too) to stderr in ``fmt``; call once at start-up."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
