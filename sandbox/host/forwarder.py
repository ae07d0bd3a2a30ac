"""The tiny forwarder that runs *inside* a sandbox with network (stdlib only, no package imports).

Why: the sandbox's network namespace holds only ``lo``; the platform is reachable through Unix
sockets bound into ``/sandbox/net`` only. Most HTTP clients cannot use a Unix-socket proxy, so
this script listens on the sandbox's own loopback and relays bytes (no policy here: the egress
proxy on the host decides; the code may bypass this script and only reaches the same proxy):

* ``--egress PORT SOCKET``: ``127.0.0.1:PORT`` -> the egress proxy's socket (``HTTP_PROXY``).
* ``--ingress SOCKET PORT``: a Unix socket it creates (the host connects to it) -> the hosted
  app on ``127.0.0.1:PORT`` (for hosted apps: the platform's reverse proxy reaches the app so).
* ``--fd FROM TO``: the inherited fd ``FROM`` becomes the program's fd ``TO`` (the browser's
  ``--remote-debugging-pipe`` wants fds 3 and 4); the serving child does not keep it.

Usage: ``python3 -I -S forwarder.py [--egress P S] [--ingress S P] -- PROGRAM ARGS...``. The sockets
are bound before the program starts; a detached child serves them, the process execs the program
(which keeps its pid and exit status). The forwarder dies with the sandbox's pid namespace.
"""

import asyncio
import fcntl
import os
import socket
import sys
from collections.abc import Awaitable, Callable

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


def _relay(connect: Connect) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await connect()
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    return handle


async def _serve(listeners: list[tuple[socket.socket, Connect]]) -> None:
    servers: list[asyncio.AbstractServer] = []
    for sock, connect in listeners:
        if sock.family == socket.AF_UNIX:
            servers.append(await asyncio.start_unix_server(_relay(connect), sock=sock))
        else:
            servers.append(await asyncio.start_server(_relay(connect), sock=sock))
    await asyncio.gather(*(s.serve_forever() for s in servers))


def _unix(path: str) -> Connect:
    return lambda: asyncio.open_unix_connection(path)


def _tcp(port: int) -> Connect:
    return lambda: asyncio.open_connection("127.0.0.1", port)


def _move_fds(args: list[str]) -> list[int]:
    """Apply every ``--fd FROM TO`` (before any socket takes a low number); the targets."""
    moves = [(int(args[i + 1]), int(args[i + 2])) for i in range(0, len(args), 3) if args[i] == "--fd"]
    parked = [(fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, 100), dst) for src, dst in moves]
    for src, _ in moves:
        os.close(src)
    for tmp, dst in parked:
        os.dup2(tmp, dst)  # inheritable: the program gets it
        os.close(tmp)
    return [dst for _, dst in parked]


def _listeners(args: list[str]) -> list[tuple[socket.socket, Connect]]:
    listeners: list[tuple[socket.socket, Connect]] = []
    i = 0
    while i < len(args):
        if args[i] == "--fd":
            i += 3
            continue
        if args[i] == "--egress":
            port, path = int(args[i + 1]), args[i + 2]
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            listeners.append((sock, _unix(path)))
        elif args[i] == "--ingress":
            path, port = args[i + 1], int(args[i + 2])
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            listeners.append((sock, _tcp(port)))
        else:
            raise SystemExit(f"forwarder: unknown option {args[i]!r}")
        sock.listen(128)
        i += 3
    return listeners


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--")
    moved = _move_fds(argv[:split])
    listeners, program = _listeners(argv[:split]), argv[split + 1 :]
    if os.fork() == 0:  # first child: detach a grandchild that serves, so the program never waits on it
        if os.fork() == 0:
            os.setsid()
            for fd in moved:
                os.close(fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            asyncio.run(_serve(listeners))
        os._exit(0)
    os.wait()
    for sock, _ in listeners:
        sock.close()
    os.execvp(program[0], program)


if __name__ == "__main__":
    main()
