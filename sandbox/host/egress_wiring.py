"""What a host backend adds to a run with network: a per-run dir bound at ``/sandbox/net`` and the forwarder.

Shared by the local and gVisor backends so both give a program the same view: its own network
namespace with only ``lo``, ``HTTP_PROXY`` / ``HTTPS_PROXY`` = ``http://127.0.0.1:3128`` served by
:mod:`sandbox.host.forwarder`, which relays to the egress proxy's per-run Unix socket; for a hosted
app also ``/sandbox/net/app.sock`` (created inside) through which the host reaches the app's port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sandbox.commands import EGRESS_PORT
from sandbox.egress_proxy import EgressChannel, EgressProxy

__all__ = ["FORWARDER_PIDS", "NET_DIR", "NetWiring", "open_wiring"]

logger = logging.getLogger(__name__)

NET_DIR = "/sandbox/net"  # inside the sandbox
FORWARDER = Path(__file__).with_name("forwarder.py")
FORWARDER_PIDS = 1  # the forwarder's own process, counted in the run's pids cap
_PYTHON = "/usr/bin/python3"


@dataclass
class NetWiring:
    """One run's network plumbing; ``close`` removes the proxy channel and the host dir."""

    host_dir: Path
    channel: EgressChannel
    ingress_port: int | None = None

    @property
    def app_socket(self) -> Path:
        """Host path of the hosted app's socket (exists once the forwarder is up)."""
        return self.host_dir / "app.sock"

    def argv(self, program: list[str], pipe_fds: tuple[int, ...] = ()) -> list[str]:
        """``program`` wrapped in the forwarder, which binds its sockets, then execs the program.

        ``pipe_fds``: inherited fds the forwarder moves to 3, 4, ... for the program (the browser's pipe).
        """
        args = [_PYTHON, "-I", "-S", f"{NET_DIR}/forwarder.py"]
        args += ["--egress", str(EGRESS_PORT), f"{NET_DIR}/egress.sock"]
        if self.ingress_port is not None:
            args += ["--ingress", f"{NET_DIR}/app.sock", str(self.ingress_port)]
        for target, fd in enumerate(pipe_fds, start=3):
            args += ["--fd", str(fd), str(target)]
        return [*args, "--", *program]

    async def close(self) -> None:
        """Stop the run's proxy channel and remove its dir; idempotent."""
        await self.channel.close()
        shutil.rmtree(self.host_dir, ignore_errors=True)


async def open_wiring(
    proxy: EgressProxy,
    parent: Path,
    labels: Mapping[str, str],
    *,
    owner: tuple[int, int] | None = None,
    ingress_port: int | None = None,
) -> NetWiring:
    """Create the run's dir under ``parent`` (owned by ``owner`` when the sandbox must write there)."""
    parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    host_dir = parent / secrets.token_hex(8)
    host_dir.mkdir(mode=0o755)
    try:
        target = host_dir / "forwarder.py"
        shutil.copyfile(FORWARDER, target)
        target.chmod(0o644)
        if owner is not None:
            os.chown(host_dir, *owner)
        channel = await proxy.open_channel(host_dir / "egress.sock", labels)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(host_dir)
        raise
    return NetWiring(host_dir=host_dir, channel=channel, ingress_port=ingress_port)
