"""The in-pod runner, run for real as a local process, and the client's reading of its frames."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

from sandbox.base import OutputChunk
from sandbox.kata import runner
from sandbox.kata.frames import FrameReader

RUNNER = Path(runner.__file__)
SLEEPER = ["/usr/bin/python3", "-c", "import time; time.sleep(60)"]


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_job(
    tmp_path: Path, code: str, *, stdin: bytes = b"", timeout: float = 30, **limits: object
) -> FrameReader:
    job = {
        "argv": [sys.executable, "-S", "main.py"],
        "env": {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        "wall_seconds": 10,
        "cpu_seconds": 10,
        "pids": 64,
        "file_bytes": 1 << 24,
        "output_bytes": 1_000_000,
        **limits,
    }
    payload = runner.write_blobs(json.dumps(job).encode(), archive({"main.py": code.encode()}), stdin)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(RUNNER), "--stdin", "--scratch", str(tmp_path)],
        input=payload,
        capture_output=True,
        timeout=timeout,
    )
    reader = FrameReader(int(job["output_bytes"]))  # type: ignore[call-overload]
    for line in proc.stdout.splitlines():
        reader.feed(line)
    assert proc.stderr == b"", proc.stderr
    expected = reader.facts.exit_code
    assert expected is not None
    assert proc.returncode == (expected if expected >= 0 else 128 - expected)
    return reader


def test_output_streams_exit_code_and_stdin(tmp_path: Path) -> None:
    code = "import sys\nprint(sys.stdin.read().upper())\nprint('oops', file=sys.stderr)\nsys.exit(7)\n"
    reader = run_job(tmp_path, code, stdin=b"hello")
    assert reader.finish() == ("HELLO\n", "oops\n")
    assert reader.facts.exit_code == 7 and reader.facts.started and not reader.facts.timed_out
    assert (tmp_path / "work" / "main.py").exists()


def test_output_past_the_cap_is_dropped_and_flagged(tmp_path: Path) -> None:
    code = "import sys\nsys.stdout.write('x' * 300_000)\nsys.stdout.flush()\nprint('tail', file=sys.stderr)\n"
    reader = run_job(tmp_path, code, output_bytes=100_000)
    stdout, stderr = reader.finish()
    assert len(stdout) == 100_000 and reader.facts.truncated == {"stdout": True, "stderr": False}
    assert stderr == "tail\n" and reader.facts.exit_code == 0


def daemon_code(marker: str, then: str) -> str:
    """A program that starts a detached sleeper carrying ``marker``, checks it runs, then does ``then``."""
    return (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.setsid()\n"
        f"    os.execv({SLEEPER[0]!r}, {[*SLEEPER, marker]!r})\n"
        "time.sleep(0.3)\n"
        f"alive = {marker!r} in open(f'/proc/{{pid}}/cmdline').read()\n"
        "print('daemon alive' if alive else 'no daemon', flush=True)\n"
        f"{then}\n"
    )


def test_wall_clock_kills_the_whole_tree(tmp_path: Path) -> None:
    marker = f"agentic-runner-{uuid.uuid4().hex}"
    start = time.monotonic()
    reader = run_job(tmp_path, daemon_code(marker, "time.sleep(60)"), wall_seconds=1)
    assert time.monotonic() - start < 5
    assert reader.facts.timed_out and reader.facts.exit_code == -9
    assert reader.finish()[0] == "daemon alive\n"
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)]


def test_daemons_left_by_a_finished_program_are_killed(tmp_path: Path) -> None:
    marker = f"agentic-runner-{uuid.uuid4().hex}"
    reader = run_job(tmp_path, daemon_code(marker, "print('bye')"))
    assert reader.facts.exit_code == 0 and reader.finish()[0] == "daemon alive\nbye\n"
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)]


def test_cpu_seconds_are_capped(tmp_path: Path) -> None:
    reader = run_job(tmp_path, "while True:\n    pass\n", cpu_seconds=1, wall_seconds=20)
    assert reader.facts.exit_code is not None and reader.facts.exit_code < 0  # SIGXCPU / SIGKILL
    assert not reader.facts.timed_out


def test_a_bad_job_is_reported_not_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(RUNNER), "--stdin", "--scratch", str(tmp_path)],
        input=runner.write_blobs(b"{}", b"", b""),
        capture_output=True,
        timeout=30,
    )
    reader = FrameReader(100)
    for line in proc.stdout.splitlines():
        reader.feed(line)
    assert proc.returncode == 125
    assert reader.facts.runner_error is not None and "argv" in reader.facts.runner_error
    assert not reader.facts.started


def test_archive_members_cannot_leave_the_scratch_dir(tmp_path: Path) -> None:
    job = {"argv": ["/bin/true"], "env": {}, "wall_seconds": 5, "output_bytes": 10}
    bad = archive({"../escaped.txt": b"x"})
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(RUNNER), "--stdin", "--scratch", str(tmp_path / "s")],
        input=runner.write_blobs(json.dumps(job).encode(), bad, b""),
        capture_output=True,
        timeout=30,
    )
    assert b"@! ValueError" in proc.stdout and not (tmp_path / "escaped.txt").exists()


def test_frame_reader_holds_the_cap_even_against_forged_frames() -> None:
    chunks: asyncio.Queue[OutputChunk | BaseException | None] = asyncio.Queue()
    reader = FrameReader(10, chunks)
    reader.feed(runner.frame("o", b"0123456789abcdef"))  # a forged oversize frame
    reader.feed(runner.frame("o", b"more"))
    reader.feed(b"@o !!!not base64!!!")
    reader.feed(b"kubelet: some runtime message")
    reader.feed(runner.frame("x", "3"))
    stdout, _ = reader.finish()
    assert stdout == "0123456789" and reader.facts.truncated["stdout"]
    streamed = [chunks.get_nowait() for _ in range(chunks.qsize())]
    assert "".join(c.data for c in streamed if isinstance(c, OutputChunk)) == stdout
    assert "not base64" in reader.facts.diagnostics and "runtime message" in reader.facts.diagnostics
    assert reader.facts.exit_code == 3


def test_frame_reader_joins_utf8_split_across_frames() -> None:
    reader = FrameReader(None)
    data = "héllo ✓".encode()
    reader.feed(runner.frame("o", data[:2]))
    reader.feed(runner.frame("o", data[2:]))
    assert reader.finish()[0] == "héllo ✓"


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
