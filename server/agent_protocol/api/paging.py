"""One page of a search answer, as the LangGraph server pages them (assistants, crons).

Why one place: every search endpoint slices the same way, says ``X-Pagination-Next`` when more
matched than the page holds, and keeps only the ``select``-ed fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fastapi import Response

__all__ = ["one_page"]


class _Public(Protocol):
    def public(self) -> dict[str, Any]: ...


def one_page(
    found: Sequence[_Public], *, offset: int, limit: int, select: Sequence[str] | None, response: Response
) -> list[dict[str, Any]]:
    """``found[offset:offset + limit]`` as public dicts (only ``select``'s fields when given)."""
    if len(found) > offset + limit:
        response.headers["X-Pagination-Next"] = str(offset + limit)
    shown = [record.public() for record in found[offset : offset + limit]]
    if select:
        shown = [{k: v for k, v in item.items() if k in select} for item in shown]
    return shown
