"""The ``agentic`` console script: run, doctor, serve (real processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

AGENTIC = str(Path(sys.executable).with_name("agentic"))


def _agentic(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTIC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_run_python_file_exit_code_propagates(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import sys\nprint('hello from', sys.argv[1])\nprint('warn', file=sys.stderr)\nsys.exit(7)\n"
    )
    proc = _agentic("run", str(prog), "world")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "hello from world\n"
    assert "warn" in proc.stderr


def test_run_typescript_file(tmp_path: Path) -> None:
    prog = tmp_path / "prog.ts"
    prog.write_text("const s: string = 'ts ok';\nconsole.log(s);\n")
    proc = _agentic("run", str(prog))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ts ok\n"


def test_run_timeout_prints_the_reason(tmp_path: Path) -> None:
    prog = tmp_path / "spin.py"
    prog.write_text("print('start', flush=True)\nwhile True:\n    pass\n")
    proc = _agentic("run", str(prog), "--timeout", "1")
    assert proc.returncode == 124, proc.stderr
    assert proc.stdout == "start\n"
    assert "timed out" in proc.stderr


def test_run_unknown_extension_is_a_usage_error(tmp_path: Path) -> None:
    prog = tmp_path / "prog.rb"
    prog.write_text("puts 1\n")
    proc = _agentic("run", str(prog))
    assert proc.returncode == 2
    assert "--lang" in proc.stderr


def test_doctor_runs_and_exits_zero() -> None:
    proc = _agentic("doctor")
    assert proc.returncode == 0, proc.stderr
    for name in (
        "bubblewrap",
        "cgroups",
        "seccomp",
        "runsc",
        "browser",
        "playwright",
        "postgres",
        "deno",
        "embedded model",
    ):
        assert name in proc.stdout, (name, proc.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "AGENTIC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}",
        "AGENTIC_API_KEYS": "serve-test-key-1,serve-test-key-2",
    }
    proc = subprocess.Popen(
        [AGENTIC, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.json()["auth"] is True
        headers = {"X-API-Key": "serve-test-key-2"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/workspaces", headers=headers).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/workspaces").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_doctor_reports_missing_pieces_with_fixes_and_exits_zero(tmp_path: Path) -> None:
    env = {
        "AGENTIC_CACHE_DIR": str(tmp_path / "empty-cache"),
        "AGENTIC_SANDBOX_LOCAL_BWRAP_PATH": str(tmp_path / "no-bwrap"),
    }
    proc = _agentic("doctor", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "missing" in proc.stdout
    assert "apt-get install bubblewrap" in proc.stdout
    assert "make model" in proc.stdout
