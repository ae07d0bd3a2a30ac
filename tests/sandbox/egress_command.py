"""``agentic egress-proxy`` as its Deployment runs it: configured from the environment, in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def egress_proxy_command(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[int, Path]]:
    """Start the command on a free loopback port with ``env`` added; yield ``(port, log file)``.

    On the way out it is stopped with SIGTERM, as Kubernetes stops it, and must exit with 0.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    full_env = {
        **os.environ,
        "AGENTIC_EGRESS_PROXY_HOST": "127.0.0.1",
        "AGENTIC_EGRESS_PROXY_PORT": str(port),
        "AGENTIC_LOG_FORMAT": "text",
        **env,
    }
    log = tmp_path / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from server.cli import app; app()", "egress-proxy"],
            env=full_env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(400):
            if "listening on 127.0.0.1" in log.read_text() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert "listening on 127.0.0.1" in log.read_text(), log.read_text()
        yield port, log
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
