"""Turn a :class:`~sandbox.base.RunRequest` into what the in-pod runner reads.

A job is three blobs: ``job.json`` (argv, environment, limits), ``files.tar.gz`` (the request's
files) and ``stdin``. A bare pod gets them in a ConfigMap (``binaryData``) next to ``runner.py``
when they fit ``configmap_max_bytes`` (a ConfigMap holds at most 1 MiB), else over ``exec`` into
its scratch dir (:func:`sandbox.kata.exec.upload_payload`, :meth:`Job.payload`); a warm-pool pod
gets them on ``exec`` stdin. Either way the compressed payload is bounded by the caller's
``max_bytes`` (the run's scratch size; a hosted app's ConfigMap), refused with a clear error above.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tarfile
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote, urlsplit

from sandbox.base import RunRequest
from sandbox.commands import build_argv, build_env, check_exec_size, check_relative_path
from sandbox.errors import InvalidRunRequestError
from sandbox.kata.manifests import RELAY_PORT, SCRATCH
from sandbox.kata.runner import write_blobs

__all__ = [
    "EGRESS_RELAY_PORT",
    "PROXY_VARIABLES",
    "Job",
    "build_job",
    "egress_relay",
    "proxy_env",
    "runner_source",
]

# The variables the local backends set for a run with network (sandbox.egress_wiring.NetWiring.env).
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
_TAR_DIRECT_BYTES = 256 * 1024  # smaller archives are built on the loop; larger ones in a thread
# Where the runner's egress relay listens in a pod (127.0.0.1) for a program whose proxy setting
# cannot carry credentials (Chromium's --proxy-server); see the runner's ``egress_relay``.
EGRESS_RELAY_PORT = 13128


def proxy_env(url: str) -> dict[str, str]:
    """Proxy variables every common HTTP client reads (curl, requests, urllib, httpx, Deno)."""
    return {name: url for name in PROXY_VARIABLES} | {"NO_PROXY": "", "no_proxy": ""}


def egress_relay(url: str) -> dict[str, object] | None:
    """The runner's ``egress_relay`` for proxy ``url``: its userinfo as ``Proxy-Authorization``.

    None when ``url`` carries no credentials (nothing to add: the program may use ``url`` itself).
    """
    parts = urlsplit(url)
    if parts.password is None or not parts.hostname:
        return None
    userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password)}".encode()
    return {
        "port": EGRESS_RELAY_PORT,
        "proxy": [parts.hostname, parts.port or 80],
        "authorization": "Basic " + base64.b64encode(userinfo).decode("ascii"),
    }


def runner_source() -> bytes:
    """The in-pod runner's source (shipped in each run's ConfigMap or over exec)."""
    return resources.files("sandbox.kata").joinpath("runner.py").read_bytes()


@dataclass(frozen=True)
class Job:
    """One run's payload for the runner."""

    spec: bytes  # job.json
    archive: bytes  # files.tar.gz
    stdin: bytes

    @property
    def size(self) -> int:
        return len(self.spec) + len(self.archive) + len(self.stdin)

    def configmap_data(self, runner: bytes) -> dict[str, str]:
        """``binaryData`` of the run's ConfigMap (base64, as the API wants)."""
        blobs = {
            "runner.py": runner,
            "job.json": self.spec,
            "files.tar.gz": self.archive,
            "stdin": self.stdin,
        }
        return {key: base64.b64encode(value).decode() for key, value in blobs.items()}

    def payload(self, runner: bytes) -> bytes:
        """The runner and the job as one stream (what an exec'd bootstrap reads, see the runner)."""
        return write_blobs(runner, self.spec, self.archive, self.stdin)


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


async def build_job(
    request: RunRequest,
    *,
    python: str,
    max_bytes: int,
    egress_proxy_url: str | None,
    service_port: int | None = None,
    bound_by: str = "a ConfigMap",
    relay_egress: bool = False,
) -> Job:
    """Check the request and build its job.

    ``bound_by``: what ``max_bytes`` is, for the error message. ``relay_egress``: the runner relays
    :data:`EGRESS_RELAY_PORT` to the proxy with the URL's credentials (when it has any).

    Raises:
        InvalidRunRequestError: bad paths, bad argv / env, or a payload over ``max_bytes``.
    """
    files: dict[str, bytes] = {}
    for path, content in request.files.items():
        files[check_relative_path(path)] = content.encode() if isinstance(content, str) else bytes(content)
    argv = build_argv(request, None, python=python)
    env = build_env(request, None, home=f"{SCRATCH}/work", tmp=f"{SCRATCH}/tmp")
    if request.network and egress_proxy_url:
        env |= proxy_env(egress_proxy_url)
    check_exec_size(argv, env)
    limits = request.limits
    spec: dict[str, object] = {
        "argv": argv,
        "env": env,
        "wall_seconds": limits.wall_seconds,
        "cpu_seconds": limits.cpu_seconds,
        "pids": limits.pids,
        "file_bytes": limits.disk_mb * 1024 * 1024,
        "output_bytes": limits.output_bytes,
    }
    if service_port is not None:
        if service_port == RELAY_PORT:
            raise InvalidRunRequestError(f"port {RELAY_PORT} is taken by the pod's relay; pick another")
        spec["service"] = {"port": service_port, "relay_port": RELAY_PORT}
    if relay_egress and request.network and egress_proxy_url and (relay := egress_relay(egress_proxy_url)):
        spec["egress_relay"] = relay
    raw = sum(len(c) for c in files.values())
    if raw > 64 * max_bytes:  # even perfect compression will not fit: skip the work
        raise _too_big(raw, max_bytes, bound_by)
    archive = await _to_thread_if_big(files, raw)
    job = Job(spec=json.dumps(spec).encode(), archive=archive, stdin=bytes(request.stdin))
    if job.size > max_bytes:
        raise _too_big(job.size, max_bytes, bound_by)
    return job


async def _to_thread_if_big(files: dict[str, bytes], raw: int) -> bytes:
    if raw <= _TAR_DIRECT_BYTES:
        return _archive(files) if files else b""
    return await asyncio.to_thread(_archive, files)


def _too_big(size: int, max_bytes: int, bound_by: str) -> InvalidRunRequestError:
    return InvalidRunRequestError(
        f"the run's files and stdin take {size} bytes (compressed); the kata backend sends at most "
        f"{max_bytes} bytes here ({bound_by}); send fewer or smaller files, or ask for a larger disk_mb"
    )
