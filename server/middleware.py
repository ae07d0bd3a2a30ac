"""ASGI middleware: a request-body size cap that answers with the JSON error envelope.

Starlette's own limiter answers some cases in plain text; this one always sends
``{"error": {"type": "request_too_large", ...}}`` with 413 and never stores a partial body.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimitMiddleware", "RequestClockMiddleware", "RequestTooLargeError", "received_at"]

RECEIVED_AT = "agentic_received_at"  # key in the ASGI scope's ``state``


def received_at(scope: Scope) -> float | None:
    """When the request reached the app (``time.perf_counter()``), if :class:`RequestClockMiddleware` ran."""
    value = scope.get("state", {}).get(RECEIVED_AT)
    return value if isinstance(value, float) else None


class RequestClockMiddleware:
    """Notes when each HTTP request reached the app, so a response can say how long it took.

    Outermost, so the time covers routing, the other middleware and reading the body; what it
    cannot see is the time before the server parsed the request (accept and read backlog).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[RECEIVED_AT] = time.perf_counter()
        await self.app(scope, receive, send)


logger = logging.getLogger(__name__)

# Past the cap we keep reading (and dropping) this much so a client that is still sending sees our
# 413 instead of a reset connection; beyond it we stop reading and the connection closes.
_DRAIN_BYTES = 256 * 1024 * 1024


class RequestTooLargeError(HTTPException):
    """Raised from ``receive`` when the body grows past the cap (FastAPI re-raises HTTPExceptions)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail={
                "type": "request_too_large",
                "message": f"request body is larger than the limit of {limit} bytes",
            },
        )


class BodySizeLimitMiddleware:
    """Refuse HTTP request bodies over ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            logger.info(
                "refused %s %s: content-length %s over %d",
                scope["method"],
                scope["path"],
                declared,
                self.max_bytes,
            )
            await _drain(receive, _DRAIN_BYTES)
            await self._send_413(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, _DRAIN_BYTES)
                    raise RequestTooLargeError(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)

    async def _send_413(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "type": "request_too_large",
                    "message": f"request body is larger than the limit of {self.max_bytes} bytes",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the body, up to ``budget`` bytes."""
    seen = 0
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
