"""An httpx transport that reaches ``*.apps.localhost`` on 127.0.0.1, as browsers do by themselves.

glibc does not resolve ``*.localhost``; Chromium and Firefox do. Tests that follow a link to an
app's own origin (``{id}.apps.localhost:PORT``) use this so nothing leaves the loopback range.
"""

from __future__ import annotations

import httpx

__all__ = ["LoopbackAppHosts"]


class LoopbackAppHosts(httpx.BaseTransport):
    """Send requests for ``*.localhost`` to 127.0.0.1 with their Host header kept."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.host.endswith(".localhost"):
            return self._inner.handle_request(request)
        headers = httpx.Headers(request.headers)
        headers["host"] = request.url.netloc.decode("ascii")
        loopback = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return self._inner.handle_request(loopback)

    def close(self) -> None:
        self._inner.close()
