"""A raw HTTP/1.1 relay to a hosted app (its Unix socket or its URL), with a keep-alive pool per app.

Why not an HTTP client library: the reverse proxy only forwards bytes it does not interpret, and
profiling ``bench/proxy.py`` showed httpx / httpcore / anyio (request models, per-request socket
introspection, a checkpoint per send) costing more than the relay itself. Here a request is one
write of its head (plus its body, streamed), and the response is relayed as read: head parsed for
framing only (``Content-Length``, chunked, or until EOF), body chunks passed on as they come, so
streamed bodies and Server-Sent Events keep flowing. Chunked responses are decoded (the ASGI server
re-frames them). A connection goes back to the pool only after a complete response that did not
ask to close. Only GET / HEAD / OPTIONS without a body use pooled connections, and one that finds
its connection stale (closed by the app while idle) is sent again on a new one; any other request
gets a new connection (it must never be sent twice). Where connections go, and the ``Host`` they
carry, is the pool's :class:`~server.apps.dialer.Dialer`: the relay is the same for both kinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from server.apps.dialer import Connection, Dialer

__all__ = ["RelayError", "Upstream", "UpstreamPool"]

_CHUNK = 64 * 1024
_MAX_IDLE = 32
_TOKEN = re.compile(r"[A-Z]{1,20}")
_TARGET = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no space, no CR / LF
_REPLAYABLE = {"GET", "HEAD", "OPTIONS"}  # safe to send again when a pooled connection was stale


class RelayError(Exception):
    """The app closed the connection or answered something that is not HTTP/1.x."""


@dataclass
class Upstream:
    """A response head from the app; iterate :meth:`body` once, then :meth:`done`."""

    status: int
    headers: list[tuple[bytes, bytes]]  # names lowercased, hop-by-hop headers still present
    _pool: UpstreamPool
    _conn: Connection
    _framing: tuple[str, int]  # ("length", n) | ("chunked", 0) | ("eof", 0) | ("none", 0)
    _reusable: bool
    _complete: bool = False

    async def body(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunked framing removed)."""
        reader = self._conn[0]
        kind, size = self._framing
        if kind == "length":
            while size > 0:
                data = await reader.read(min(size, _CHUNK))
                if not data:
                    raise RelayError("the app closed the connection mid-body")
                size -= len(data)
                yield data
        elif kind == "chunked":
            while True:
                line = await reader.readuntil(b"\r\n")
                length = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    break
                yield await reader.readexactly(length)
                await reader.readexactly(2)
        elif kind == "eof":
            while data := await reader.read(_CHUNK):
                yield data
        self._complete = True

    def done(self) -> None:
        """Give the connection back when the response was read to its end and may be reused."""
        if self._complete and self._reusable:
            self._pool.release(self._conn)
        else:
            self._conn[1].close()


class UpstreamPool:
    """Keep-alive connections to one app (through ``dialer``)."""

    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer
        self._idle: list[Connection] = []

    def release(self, conn: Connection) -> None:
        """Keep ``conn`` for the next request (at most :data:`_MAX_IDLE` idle)."""
        if len(self._idle) < _MAX_IDLE and not conn[1].is_closing():
            self._idle.append(conn)
        else:
            conn[1].close()

    def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: Callable[[], AsyncIterator[bytes]] | None = None,
        *,
        chunked: bool = False,
    ) -> Upstream:
        """Send one request; its response head (the body is read through the result).

        ``body``: the request body (its ``Content-Length`` among ``headers``, or ``chunked=True``).

        Raises:
            OSError: the app's socket or address refused the connection (TLS errors included).
            RelayError: the app closed without answering, or answered with something else than HTTP.
        """
        if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
            raise RelayError(f"refusing to send {method[:20]!r} {target[:80]!r}")
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), b"host: " + self.dialer.host + b"\r\n"]
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        if chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        head = b"".join(lines) + b"\r\n"
        while self._idle and body is None and method in _REPLAYABLE:
            conn = self._idle.pop()
            if conn[0].at_eof() or conn[1].is_closing():
                conn[1].close()
                continue
            with contextlib.suppress(RelayError, OSError, asyncio.IncompleteReadError):
                return await self._exchange(conn, method, head, None, chunked)
            conn[1].close()  # stale: the app closed it while idle; try the next or a new one
        return await self._exchange(await self.dialer.open(), method, head, body, chunked)

    async def _exchange(
        self,
        conn: Connection,
        method: str,
        head: bytes,
        body: Callable[[], AsyncIterator[bytes]] | None,
        chunked: bool,
    ) -> Upstream:
        reader, writer = conn
        try:
            writer.write(head)
            if body is not None:
                await _send_body(writer, body(), chunked)
            await writer.drain()
            while True:
                status, headers, keep = _parse_head(await reader.readuntil(b"\r\n\r\n"))
                if status >= 200 or status == 101:
                    break  # skip 100 Continue and other informational answers
        except asyncio.IncompleteReadError as exc:
            writer.close()
            raise RelayError("the app closed the connection without answering") from exc
        except (asyncio.LimitOverrunError, ValueError) as exc:
            writer.close()
            raise RelayError(f"the app's answer is not HTTP/1.x: {exc}") from exc
        except BaseException:
            writer.close()
            raise
        framing = _framing(method, status, headers)
        reusable = keep and framing[0] != "eof"
        return Upstream(status, headers, self, conn, framing, reusable)


async def _send_body(writer: asyncio.StreamWriter, chunks: AsyncIterator[bytes], chunked: bool) -> None:
    async for chunk in chunks:
        if not chunk:
            continue
        writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bool]:
    """(status, headers, keep-alive) of a response head."""
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError(f"status line {lines[0][:80]!r}")
    status = int(rest[:3])
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    tokens = b",".join(v for k, v in headers if k == b"connection").lower()
    keep = b"keep-alive" in tokens if version == b"HTTP/1.0" else b"close" not in tokens
    return status, headers, keep


def _framing(method: str, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[str, int]:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return ("none", 0)
    if any(k == b"transfer-encoding" and b"chunked" in v.lower() for k, v in headers):
        return ("chunked", 0)
    length = next((v for k, v in headers if k == b"content-length"), None)
    if length is not None:
        return ("length", int(length))
    return ("eof", 0)
