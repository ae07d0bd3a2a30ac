"""JSON for the wire: graph values hold LangChain messages, Interrupts and Commands, not plain dicts.

Serialising once per event (to bytes) lets every subscriber of a run share the same payload.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from langgraph.types import Send

__all__ = ["dumpb", "dumps_to_obj", "loads"]


def _default(obj: Any) -> Any:
    """Turn what orjson cannot encode into JSON-able values (never raise: a stream must not die on it)."""
    if isinstance(obj, Send):
        return {"node": obj.node, "args": obj.arg}
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and not isinstance(obj, type):
        return model_dump()
    as_dict = getattr(obj, "_asdict", None)
    if callable(as_dict) and not isinstance(obj, type):
        return as_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    if isinstance(obj, (set, frozenset, deque, tuple)):
        return list(obj)
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, (uuid.UUID, Path)):
        return str(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    return repr(obj)


def dumpb(obj: Any) -> bytes:
    """Encode ``obj`` as compact JSON bytes."""
    return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS)


def dumps_to_obj(obj: Any) -> Any:
    """Round-trip through JSON so a response model gets plain values only."""
    return orjson.loads(dumpb(obj))


def loads(data: str | bytes | None) -> Any:
    """Decode JSON stored as text; ``None`` stays ``None``."""
    if data is None or data == "":
        return None
    return orjson.loads(data)
