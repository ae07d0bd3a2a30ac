"""SSE responses for run streams (sse-starlette), and the long-poll body of ``/wait`` and ``/join``.

The response only *reads* a subscription: when the client goes away, sse-starlette cancels the
body generator, whose ``finally`` asks the run manager to cancel the run if the client said
``on_disconnect="cancel"``; otherwise the run goes on (it runs in its own task).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from server.agent_protocol.serde import dumpb
from server.agent_protocol.streaming.streams import RunEvent, Subscription
from server.metrics import STREAM_FIRST_BYTE

__all__ = ["encode_event", "event_stream_response", "run_headers", "wait_response"]

logger = logging.getLogger(__name__)


def encode_event(ev: RunEvent, *, with_id: bool = True) -> bytes:
    """One SSE frame; the JSON never holds raw newlines, so one ``data:`` line suffices."""
    frame = b"event: " + ev.event.encode() + b"\r\ndata: " + ev.data + b"\r\n"
    if with_id:
        frame += b"id: " + str(ev.id).encode() + b"\r\n"
    return frame + b"\r\n"


def run_headers(thread_id: str, run_id: str, tail: str) -> dict[str, str]:
    """``Location`` lets the SDK reconnect; ``Content-Location`` tells it the run id."""
    return {
        "Location": f"/threads/{thread_id}/runs/{run_id}/{tail}",
        "Content-Location": f"/threads/{thread_id}/runs/{run_id}",
    }


def event_stream_response(
    sub: Subscription,
    *,
    headers: dict[str, str],
    on_disconnect: Callable[[], None] | None,
    heartbeat_s: float,
    first: Callable[[], Awaitable[RunEvent | None]] | None = None,
    coalesce_s: float = 0.0,
    received_at: float | None = None,
) -> EventSourceResponse:
    """Stream a subscription as SSE; call ``on_disconnect`` if the client leaves before the end.

    ``first`` gives an event sent before the subscription's, without an id (it is not one of
    the run's numbered events, so ``Last-Event-ID`` is unaffected): what a queued run says at once.
    Events that come within ``coalesce_s`` of each other go out in one write. ``received_at``
    (``time.perf_counter()`` when the request came) times the first body byte
    (``agentic_stream_first_byte_seconds``).
    """

    def timed(chunk: bytes) -> bytes:
        nonlocal received_at
        if received_at is not None:
            STREAM_FIRST_BYTE.observe(time.perf_counter() - received_at)
            received_at = None
        return chunk

    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            if first is not None:
                try:
                    opening = await first()
                except Exception:  # the stream itself still works: it just says nothing yet
                    logger.exception("building the first event of a stream failed")
                    opening = None
                if opening is not None:
                    yield timed(encode_event(opening, with_id=False))
            async for batch in sub.batches(coalesce_s):  # one write per burst of events
                yield timed(b"".join(encode_event(ev) for ev in batch))
            finished = True
        finally:
            if not finished and on_disconnect is not None:
                on_disconnect()

    return EventSourceResponse(
        body(),
        headers=headers,
        ping=heartbeat_s,
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
    )


def wait_response(
    result: Callable[[], Awaitable[Any]],
    *,
    headers: dict[str, str],
    on_disconnect: Callable[[], None] | None,
    heartbeat_s: float,
) -> StreamingResponse:
    """A JSON body sent when the run ends; blank lines keep idle proxies from cutting the wait.

    JSON parsers skip leading whitespace, so the heartbeats do not change the document.
    """

    async def body() -> AsyncIterator[bytes]:
        finished = False
        task = asyncio.ensure_future(result())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=heartbeat_s)
                if done:
                    break
                yield b"\n"
            finished = True
            yield dumpb(task.result())
        finally:
            if not task.done():
                task.cancel()
            if not finished and on_disconnect is not None:
                on_disconnect()

    return StreamingResponse(body(), media_type="application/json", headers=headers)
