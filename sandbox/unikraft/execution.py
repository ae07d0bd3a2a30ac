"""One command inside an instance, through the sandbox plugin: files in, output out, wall time held.

Why not the SDK's ``Sandbox.exec``: it keeps all output in memory and its polls back off to a
second regardless of the caller's cap. Here each stream keeps at most ``output_bytes`` (the rest is
skipped on the instance side, never downloaded: a capped stream is read one byte past its known
end), chunks are handed on as they arrive, and the wall-clock deadline is ours. The requests are
the SDK's own plumbing (``SandboxApi``), so bodies are built from its models.

The loop alternates a bounded wait for the command's end (``wait_timeout``, which the plugin
holds) with one read of both streams; the wait slice starts at 50 ms and doubles to 1 s while the
program is quiet, so a short run costs few requests and streamed output is at most a second late.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from unikraft_cloud import Sandbox, UnikraftCloudError
from unikraft_cloud.api.plugins.sandbox import SandboxApi, models

from sandbox.base import OutputChunk
from sandbox.streaming import ChunkSink
from sandbox.unikraft.request import InstanceJob

__all__ = ["CommandOutcome", "StreamCapture", "follow_command", "start_command", "upload_files"]

logger = logging.getLogger(__name__)

FIRST_SLICE_S = 0.05
MAX_SLICE_S = 1.0
READ_CHUNK = 1 << 20  # bytes of one stream per read
STDIN_CHUNK = 32 << 10  # bytes of stdin per request
UPLOAD_CONCURRENCY = 8
MAX_FAILURES = 3  # consecutive failed plugin requests before the instance is looked at


@dataclass
class StreamCapture:
    """One output stream: what was kept (at most ``cap`` bytes), how far it was read, what exists."""

    name: Literal["stdout", "stderr"]
    cap: int
    data: bytearray = field(default_factory=bytearray)
    offset: int = 0  # next byte to read on the instance side
    available: int = 0  # bytes the stream holds there
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )

    @property
    def truncated(self) -> bool:
        """True once the stream holds more than the cap."""
        return self.available > self.cap

    def request_range(self) -> models.CommandLogsRange:
        """The next range to read: up to the cap, then one byte at the end (to follow ``available``)."""
        room = self.cap - len(self.data)
        if room > 0:
            return models.CommandLogsRange(offset=self.offset, limit=min(READ_CHUNK, room))
        return models.CommandLogsRange(offset=max(self.offset, self.available), limit=1)

    def take(self, chunk: bytes, available: int) -> str:
        """Keep what fits of ``chunk`` (read at ``offset``); return its text for streaming."""
        self.available = max(self.available, available)
        kept = chunk[: max(0, self.cap - len(self.data))]
        self.data.extend(kept)
        self.offset += len(chunk)
        if len(self.data) >= self.cap:
            self.offset = max(self.offset, self.available)
        return self.decoder.decode(kept)

    def flush(self) -> str:
        """The text of a multi-byte character cut at the end, if any."""
        return self.decoder.decode(b"", final=True)


@dataclass(frozen=True, kw_only=True)
class CommandOutcome:
    """How the command went: its exit code (None if it did not end) and its capped output."""

    exit_code: int | None
    stdout: StreamCapture
    stderr: StreamCapture
    timed_out: bool
    duration_s: float
    lost: UnikraftCloudError | None = None  # the plugin stopped answering mid-run


async def upload_files(sandbox: Sandbox, job: InstanceJob) -> None:
    """Create the job's directories, then write its files (a few at a time)."""
    for directory in job.directories:
        await sandbox.fs.mkdir(directory, parents=True)
    gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

    async def write(path: str, data: bytes) -> None:
        async with gate:
            await sandbox.fs.write(path, data)

    await asyncio.gather(*(write(path, data) for path, data in job.files.items()))


async def start_command(api: SandboxApi, job: InstanceJob) -> str:
    """Start the job's command; return the plugin's id for it."""
    res = await api.commands.run_command(
        body=models.RunCommandRequest(cmd=list(job.argv), cwd=job.cwd, env=dict(job.env))
    )
    uuid = res.data.uuid if res.data is not None else None
    if not uuid:
        raise UnikraftCloudError("the sandbox plugin started a command but named no id", kind="parse")
    return uuid


async def _feed_stdin(api: SandboxApi, command: str, data: bytes) -> None:
    """Send stdin in chunks, the last one closing it (an empty stdin is one request: EOF)."""
    pieces = [data[i : i + STDIN_CHUNK] for i in range(0, len(data), STDIN_CHUNK)] or [b""]
    for index, piece in enumerate(pieces):
        body = models.CommandStdinRequest(data=base64.b64encode(piece).decode(), eof=index == len(pieces) - 1)
        await api.commands.write_command_stdin(command, body=body)


async def _wait_slice(api: SandboxApi, command: str, seconds: float) -> bool:
    """Wait up to ``seconds`` for the command to end; True when it has."""
    try:
        await api.client.request(
            models.EmptyResponse,
            method="POST",
            path=f"/commands/{quote(command, safe='')}/wait_timeout",
            body=models.CommandWaitTimeoutRequest(timeout_s=round(seconds, 3)),
            timeout=seconds + 10.0,
        )
    except UnikraftCloudError as exc:
        if exc.status == 408:
            return False
        raise
    return True


async def _read(
    api: SandboxApi, command: str, out: StreamCapture, err: StreamCapture, sink: ChunkSink | None
) -> int:
    """Read both streams once; hand new text to ``sink``; return the bytes read."""
    body = models.CommandLogsRequest(stdout=out.request_range(), stderr=err.request_range())
    res = await api.commands.get_command_logs(command, body=body)
    logs = res.data or models.CommandLogsData()
    got = 0
    for capture, encoded, available in (
        (out, logs.stdout, logs.stdout_available),
        (err, logs.stderr, logs.stderr_available),
    ):
        chunk = base64.b64decode(encoded or "")
        got += len(chunk)
        text = capture.take(chunk, available or 0)
        if text and sink is not None:
            sink.put_nowait(OutputChunk(stream=capture.name, data=text))
    return got


async def _exit_code(api: SandboxApi, command: str) -> int | None:
    res = await api.commands.get_command_by_uuid(command)
    return res.data.exitcode if res.data is not None else None


async def follow_command(
    api: SandboxApi, command: str, job: InstanceJob, sink: ChunkSink | None, started: float
) -> CommandOutcome:
    """Feed stdin, follow ``command`` until it ends or the wall time passes; return the outcome.

    A plugin that stops answering (the instance crashed, ran out of memory, was stopped) ends the
    follow with ``lost`` set after :data:`MAX_FAILURES` failed requests in a row; the caller asks
    the platform why.
    """
    out = StreamCapture("stdout", job.limits.output_bytes)
    err = StreamCapture("stderr", job.limits.output_bytes)
    deadline = started + job.limits.wall_seconds
    feeder = asyncio.ensure_future(_feed_stdin(api, command, job.stdin))
    slice_s, failures = FIRST_SLICE_S, 0
    exit_code: int | None = None
    timed_out = False
    lost: UnikraftCloudError | None = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            try:
                ended = await _wait_slice(api, command, min(slice_s, remaining))
                got = await _read(api, command, out, err, sink)
                while ended and got and not (out.offset >= out.available and err.offset >= err.available):
                    got = await _read(api, command, out, err, sink)
                if ended:
                    exit_code = await _exit_code(api, command)
                    break
            except UnikraftCloudError as exc:
                failures += 1
                logger.info("unikraft: plugin request failed (%d in a row): %s", failures, exc)
                if failures >= MAX_FAILURES:
                    lost = exc
                    break
                await asyncio.sleep(min(0.1 * 2**failures, max(0.0, deadline - time.monotonic())))
                continue
            failures = 0
            slice_s = FIRST_SLICE_S if got else min(slice_s * 2, MAX_SLICE_S)
    finally:
        if not feeder.done():
            feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder  # a feed refused because the program ended (or never read) is no failure
    if sink is not None:
        for capture in (out, err):
            tail = capture.flush()
            if tail:
                sink.put_nowait(OutputChunk(stream=capture.name, data=tail))
    return CommandOutcome(
        exit_code=exit_code,
        stdout=out,
        stderr=err,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        lost=lost,
    )
