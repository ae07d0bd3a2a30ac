"""A hosted app for the tests (stdlib only): HTML, a POST echo, Server-Sent Events and a WebSocket echo
(which picks the last subprotocol a client offers)."""

import asyncio
import base64
import hashlib
import os
import struct

PREFIX = os.environ.get("ROOT_PATH", "")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def websocket(reader, writer, key, protocols):
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    chosen = f"Sec-WebSocket-Protocol: {protocols[-1]}\r\n".encode() if protocols else b""
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + chosen + b"\r\n"
    )
    while True:
        head = await reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(length)))
        if opcode == 8:
            writer.write(b"\x88\x00")
            await writer.drain()
            return
        reply = b"echo:" + data
        size = bytes([len(reply)]) if len(reply) < 126 else b"\x7e" + struct.pack(">H", len(reply))
        writer.write(bytes([0x80 | opcode]) + size + reply)
        await writer.drain()


async def handle(reader, writer):
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if ":" in h)}
        if headers.get("upgrade", "").lower() == "websocket":
            offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
            await websocket(reader, writer, headers["sec-websocket-key"].encode(), offered)
            return
        if path.startswith("/sse"):
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
            )
            for i in range(3):
                writer.write(f"data: tick {i}\n\n".encode())
                await writer.drain()
                await asyncio.sleep(0.3)
            return
        if method == "POST":
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            text = b"got " + str(len(body)).encode() + b" bytes"
        else:
            prefix = headers.get("x-forwarded-prefix", "")
            text = (
                f"<a href='{PREFIX}/next'>hello from {path}</a> prefix={prefix} host={headers.get('host')} "
                f"auth={headers.get('authorization', '-')} cookie={headers.get('cookie', '-')} "
                f"identity={headers.get('x-agentic-egress-identity', '-')}"
            ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
            + str(len(text)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + text
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(os.environ["PORT"]))
    print("listening on", os.environ["PORT"], flush=True)
    await server.serve_forever()


asyncio.run(main())
