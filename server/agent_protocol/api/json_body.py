"""A route class reading every request body as JSON, whatever its ``Content-Type``.

Why: front-ends reach the Agent Protocol through proxies that do not keep the header (the Next.js
pass-through proxy of agent-chat-ui forwards JSON as ``text/plain``), and FastAPI answers 422 to a
JSON model body that is not labelled JSON. These routes take JSON only, so the label adds nothing;
a body that is not JSON still gets the usual 422. The REST ``/v1`` routes keep their own rule.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["JSONBodyRoute"]

_JSON = b"application/json"


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == _JSON or (media.startswith(b"application/") and media.endswith(b"+json"))


class JSONBodyRoute(APIRoute):
    """Relabels a request body that is not declared JSON as ``application/json`` before parsing."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The default handler, given a request whose body is labelled JSON."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            headers = request.scope["headers"]
            content_type = next((v for k, v in headers if k == b"content-type"), None)
            if content_type is not None and not _is_json(content_type):
                relabelled = [(k, v) for k, v in headers if k != b"content-type"]
                relabelled.append((b"content-type", _JSON))
                request = Request({**request.scope, "headers": relabelled}, request.receive)
            return await handler(request)

        return handle
