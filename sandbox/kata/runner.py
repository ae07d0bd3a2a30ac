"""The program that runs inside a Kata sandbox pod: unpacks the run, starts it, frames its output.

Why a runner at all: a pod's log interleaves stdout and stderr with nothing to tell them apart, a
pod cannot take stdin, and a pod's limits know nothing of CPU seconds, a process count or an exact
wall-clock cap. So the container's command is this script (shipped in the run's ConfigMap, or sent
over ``exec``: on stdin for a warm-pool pod, as an uploaded file for a bare pod whose files are too
large for a ConfigMap; the image only needs ``python3``). It:

1. reads the job (argv, env, limits) and the files (a ``tar.gz``) and writes them into the scratch
   dir (``<scratch>/work`` is the cwd and ``$HOME``, ``<scratch>/tmp`` is ``$TMPDIR``);
2. starts the program in its own session with ``RLIMIT_CPU`` (cpu_seconds), ``RLIMIT_NPROC`` (pids;
   per VM under Kata), ``RLIMIT_FSIZE`` (disk) and no core files, stdin from the job;
3. writes each piece of output as one line on its own stdout, the pod's log (:func:`frame`):
   ``@o``/``@e`` + base64 for stdout/stderr, ``@O``/``@E`` once a stream passed ``output_bytes``
   (the rest is read and dropped, so the program never blocks), ``@s`` when the program started,
   ``@t`` when it ran past ``wall_seconds`` (then the whole tree is killed), ``@m`` when the
   container's cgroup saw an OOM kill, ``@p`` its peak memory, ``@x`` the exit code (negative: the
   signal), ``@!`` a runner failure (bad job);
4. kills every process the program left (orphans reparent to the runner, a child subreaper) when
   the program ends, so nothing outlives the run.

The program can write forged frames only into its own result (it shares the runner's uid). In
service mode (``job["service"]``) there is no wall-clock cap and no output cap, and a relay thread
listens on ``0.0.0.0:relay_port`` and forwards to ``127.0.0.1:port`` where the app listens. With
``job["egress_relay"]`` (browser pods when the egress proxy wants run identities: Chromium's
``--proxy-server`` cannot carry credentials) another thread listens on ``127.0.0.1:port`` and
forwards to the egress proxy, adding the run's ``Proxy-Authorization`` to each request's head.

Standard library only; runs with ``python3 -I -S``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import io
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["frame", "main", "read_blobs", "write_blobs"]

CHUNK = 8192  # bytes read per pipe read; one frame line stays ~11 KB (under the kubelet's 16 KB lines)
DRAIN_S = 0.2  # after the program exits, how long its leftover children may keep the pipes open
_PR_SET_CHILD_SUBREAPER = 36


def frame(tag: str, data: bytes | str = b"") -> bytes:
    """One log line: ``@`` + tag letter, then base64 data for output frames or plain text for others."""
    if tag in ("o", "e"):
        assert isinstance(data, bytes)
        return b"@" + tag.encode() + b" " + base64.b64encode(data) + b"\n"
    text = data.decode() if isinstance(data, bytes) else data
    return f"@{tag} {text}\n".encode() if text else f"@{tag}\n".encode()


def write_blobs(*blobs: bytes) -> bytes:
    """Length-prefixed blobs: how a job is sent to :func:`main` on stdin (``--stdin``)."""
    return b"".join(f"{len(blob)}\n".encode() + blob for blob in blobs)


def read_blobs(stream: IO[bytes], count: int) -> list[bytes]:
    """Read ``count`` blobs written by :func:`write_blobs`."""
    blobs = []
    for _ in range(count):
        size = int(stream.readline().strip() or b"0")
        data = b""
        while len(data) < size:
            more = stream.read(size - len(data))
            if not more:
                raise ValueError("the job ended early")
            data += more
        blobs.append(data)
    return blobs


class _Out:
    """The runner's stdout (the pod log), written by the main loop and never by the relay."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def write(self, line: bytes) -> None:
        with self.lock:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()


def _extract(archive: bytes, work: Path) -> None:
    """Write the run's files into ``work`` (regular files and dirs only, never outside it)."""
    if not archive:
        return
    root = work.resolve()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if root not in target.parents:
                raise ValueError(f"file {member.name!r} would leave the scratch dir")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
            else:
                raise ValueError(f"file {member.name!r} is not a regular file")


def _cgroup_value(names: tuple[str, ...], key: str | None = None) -> int | None:
    """A number from the container's own cgroup (v2 first, then v1); None when not visible."""
    for name in names:
        path = Path("/sys/fs/cgroup") / name
        try:
            text = path.read_text()
        except OSError:
            continue
        if key is None:
            with contextlib.suppress(ValueError):
                return int(text.split()[0])
            continue
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return int(parts[1])
    return None


def _oom_kills() -> int | None:
    return _cgroup_value(("memory.events", "memory/memory.oom_control"), "oom_kill")


def _descendants(root: int) -> set[int]:
    """Pids whose parent chain leads to ``root`` (orphans of the run reparent to us: subreaper)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found |= frontier
    return found


def _kill_others() -> None:
    """SIGKILL every process we started, directly or not (the run's leftovers), and reap them."""
    for _ in range(50):
        pids = _descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        _reap(None)


_STATUSES: dict[int, int] = {}  # pid -> exit code of every process we reaped


def _reap(child: int | None) -> int | None:
    """Reap finished processes (we are pid 1 or a subreaper); the exit code of ``child`` once seen."""
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        _STATUSES[pid] = os.waitstatus_to_exitcode(raw)
    return None if child is None else _STATUSES.get(child)


def _limits(job: dict[str, Any]) -> None:
    """Applied in the child before exec: CPU seconds, processes, file size, no core dumps."""
    os.setsid()
    cpu = job.get("cpu_seconds")
    if cpu:
        soft = max(1, int(-(-float(cpu) // 1)))
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    if job.get("pids"):
        resource.setrlimit(resource.RLIMIT_NPROC, (int(job["pids"]), int(job["pids"])))
    if job.get("file_bytes"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(job["file_bytes"]), int(job["file_bytes"])))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _splice(client: socket.socket, upstream: socket.socket) -> None:
    """Copy both ways until both sides are done, then close both."""
    upstream.settimeout(None)
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept_forever(server: socket.socket, serve: Callable[[socket.socket], None]) -> None:
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


def _relay(listen_port: int, target_port: int) -> None:
    """Forward ``0.0.0.0:listen_port`` to the app on ``127.0.0.1:target_port`` (service mode)."""
    server = socket.create_server(("0.0.0.0", listen_port), reuse_port=False)

    def serve(client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", target_port), timeout=5)
        except OSError:
            client.close()
            return
        _splice(client, upstream)

    _accept_forever(server, serve)


def _egress_relay(server: socket.socket, proxy: tuple[str, int], authorization: str) -> None:
    """Forward each connection to the egress proxy, its request head carrying ``authorization``.

    The proxy answers one request per connection, so only the first head needs it; a header the
    client sent itself is dropped (two would be refused).
    """
    ours = f"Proxy-Authorization: {authorization}".encode()

    def serve(client: socket.socket) -> None:
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                more = client.recv(65536)
                if not more:
                    break
                head += more
        end = head.find(b"\r\n\r\n")
        if end < 0:
            client.close()
            return
        request_line, _, headers = head[:end].partition(b"\r\n")
        kept = [h for h in headers.split(b"\r\n") if h and not h.lower().startswith(b"proxy-authorization:")]
        try:
            upstream = socket.create_connection(proxy, timeout=10)
            upstream.sendall(b"\r\n".join([request_line, *kept, ours]) + head[end:])
        except OSError:
            client.close()
            return
        _splice(client, upstream)

    _accept_forever(server, serve)


def run(job: dict[str, Any], archive: bytes, stdin: bytes, scratch: Path, out: _Out) -> int:
    """Run the job; return the runner's exit code (the program's, 128 + signal when killed)."""
    work, tmp = scratch / "work", scratch / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    _extract(archive, work)
    stdin_path = tmp / ".agentic-stdin"
    stdin_path.write_bytes(stdin)
    service = job.get("service")
    if service:
        threading.Thread(target=_relay, args=(service["relay_port"], service["port"]), daemon=True).start()
    egress = job.get("egress_relay")
    if egress:  # listening before the program starts: Chromium connects at once
        listener = socket.create_server(("127.0.0.1", int(egress["port"])))
        proxy = (str(egress["proxy"][0]), int(egress["proxy"][1]))
        args = (listener, proxy, str(egress["authorization"]))
        threading.Thread(target=_egress_relay, args=args, daemon=True).start()
    oom_before = _oom_kills()
    with open(stdin_path, "rb") as stdin_file:
        stdin_path.unlink()
        proc = subprocess.Popen(
            job["argv"],
            cwd=work,
            env=job["env"],
            stdin=stdin_file,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _limits(job),
        )
    out.write(frame("s"))
    cap = None if service else int(job["output_bytes"])
    wall = None if service else float(job["wall_seconds"])
    deadline = None if wall is None else time.monotonic() + wall
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): "o", proc.stderr.fileno(): "e"}
    sent = {"o": 0, "e": 0}
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    code: int | None = None
    timed_out = False
    drain_until: float | None = None
    while streams:
        now = time.monotonic()
        if code is None:
            code = _reap(proc.pid)
            if code is not None:
                drain_until = now + DRAIN_S
        if deadline is not None and code is None and now >= deadline:
            timed_out = True
            out.write(frame("t"))
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            _kill_others()
            deadline = None
        if drain_until is not None and now >= drain_until:
            break
        waits = [0.05]
        if deadline is not None:
            waits.append(max(0.0, deadline - now))
        for key, _ in sel.select(timeout=min(waits)):
            fd = int(key.fd)
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(fd)
                del streams[fd]
                continue
            tag = streams[fd]
            if cap is not None and sent[tag] + len(data) > cap:
                keep = data[: max(0, cap - sent[tag])]
                if keep:
                    out.write(frame(tag, keep))
                if sent[tag] <= cap:
                    out.write(frame(tag.upper()))
                sent[tag] = cap + 1  # flagged; everything after is dropped
                continue
            if cap is None or sent[tag] <= cap:
                out.write(frame(tag, data))
                sent[tag] += len(data)
    _kill_others()
    while code is None:
        code = _reap(proc.pid)
        if code is None:
            time.sleep(0.01)
    proc.returncode = code  # reaped by us, not by Popen
    if timed_out:
        code = -signal.SIGKILL
    oom_after = _oom_kills()
    if oom_before is not None and oom_after is not None and oom_after > oom_before:
        out.write(frame("m"))
    peak = _cgroup_value(("memory.peak", "memory/memory.max_usage_in_bytes"))
    if peak is not None:
        out.write(frame("p", str(peak)))
    out.write(frame("x", str(code)))
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    """``runner.py (--in DIR | --stdin) --scratch DIR``."""
    args = sys.argv[1:] if argv is None else argv
    out = _Out()
    try:
        scratch = Path(args[args.index("--scratch") + 1])
        if "--stdin" in args:
            job_bytes, archive, stdin = read_blobs(sys.stdin.buffer, 3)
            # Let go of the payload (an uploaded file's space in scratch is freed once unlinked).
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        else:
            source = Path(args[args.index("--in") + 1])
            job_bytes = (source / "job.json").read_bytes()
            archive = (source / "files.tar.gz").read_bytes() if (source / "files.tar.gz").exists() else b""
            stdin = (source / "stdin").read_bytes() if (source / "stdin").exists() else b""
        job = json.loads(job_bytes)
        with contextlib.suppress(OSError):  # orphans of the run come back to us, to be reaped and killed
            ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return run(job, archive, stdin, scratch, out)
    except (OSError, ValueError, KeyError, IndexError, tarfile.TarError) as exc:
        out.write(frame("!", f"{type(exc).__name__}: {exc}".replace("\n", " ")))
        return 125


if __name__ == "__main__":
    sys.exit(main())
