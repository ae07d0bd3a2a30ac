"""``exec`` into a pod over the API's websocket (``v4.channel.k8s.io``), through ``kubernetes.aio``.

Why the asyncio client's own websocket (:class:`kubernetes.aio.stream.WsApiClient`) and not the sync
client's ``kubernetes.stream`` in a thread: it is the same official package, it speaks the channel
protocol (stdin 0, stdout 1, stderr 2, status 3) over the connection pool's aiohttp session, and it
hands back the raw websocket, so a large stdin goes out in chunks with back-pressure and output is
read as it comes, all on the event loop; a thread would hold a blocking socket per exec instead.

Two uses: a warm-pool run (the runner and its job on stdin, framed output on stdout, see
:mod:`sandbox.kata.warm_pool`) and the upload of a large file set into a bare pod
(:func:`upload_payload`): the pod's runner waits for the file the exec'd receiver writes into the
scratch ``emptyDir``. ``v4`` cannot half-close stdin, so every payload is length-prefixed and the
receiving side stops on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes.aio.client import CoreV1Api
from kubernetes.aio.stream import WsApiClient

from sandbox.errors import SandboxStartError
from sandbox.kata.kube import ApiException, KubeApi, api_error
from sandbox.kata.manifests import CONTAINER, upload_command
from sandbox.kata.settings import KataSettings

__all__ = ["CHUNK_BYTES", "ExecStatus", "PodExec", "upload_payload"]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024  # stdin goes out in frames of this size (a websocket message each)
_STDIN, _STDOUT, _STDERR, _ERROR = 0, 1, 2, 3
_HINTS = {
    401: "the API server refused our credentials",
    403: "our service account may not create pods/exec (see the Role in infra/)",
    404: "the pod is gone",
}


@dataclass(frozen=True)
class ExecStatus:
    """How the exec'd command ended, from the status channel (``exit_code`` None: no status came)."""

    exit_code: int | None
    message: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def parse_status(raw: str) -> ExecStatus:
    """The status channel's ``metav1.Status`` as an exit code and a message."""
    if not raw:
        return ExecStatus(None, "the exec ended without a status")
    try:
        data = json.loads(raw)
    except ValueError:
        return ExecStatus(None, raw[:300])
    if data.get("status") == "Success":
        return ExecStatus(0, "")
    for cause in (data.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return ExecStatus(int(cause.get("message")), str(data.get("message") or "non-zero exit"))
            except (TypeError, ValueError):
                break
    return ExecStatus(None, str(data.get("message") or data.get("reason") or raw)[:300])


class PodExec:
    """Exec sessions over one websocket-capable client (made when first needed)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._ws: WsApiClient | None = None

    def _core(self) -> CoreV1Api:
        if self._ws is None:
            self._ws = WsApiClient(configuration=self.api.configuration)  # type: ignore[no-untyped-call]
        return CoreV1Api(self._ws)

    async def run(
        self,
        namespace: str,
        pod: str,
        command: list[str],
        stdin: bytes,
        *,
        on_stdout: Callable[[bytes], None],
        on_stderr: Callable[[bytes], None],
    ) -> ExecStatus:
        """Run ``command`` in ``pod``'s container with ``stdin``; output goes to the callbacks.

        Raises:
            ApiException, aiohttp.ClientError: the API refused the exec or the connection broke.
        """
        connect = await self._core().connect_get_namespaced_pod_exec_without_preload_content(
            pod,
            namespace,
            command=command,
            container=CONTAINER,
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
        )
        status = ""
        session: Any = connect  # aiohttp's ws_connect context (typed as a response by the client)
        async with session as ws:
            for start in range(0, len(stdin), CHUNK_BYTES):
                await ws.send_bytes(bytes([_STDIN]) + stdin[start : start + CHUNK_BYTES])
            async for message in ws:
                if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    break
                data = message.data if isinstance(message.data, bytes) else message.data.encode()
                if not data:
                    continue
                channel, body = data[0], data[1:]
                if channel == _STDOUT:
                    on_stdout(body)
                elif channel == _STDERR:
                    on_stderr(body)
                elif channel == _ERROR:
                    status += body.decode("utf-8", "replace")
        return parse_status(status)

    async def close(self) -> None:
        """Close the websocket client; idempotent."""
        if self._ws is not None:
            await self._ws.close()  # type: ignore[no-untyped-call]
            self._ws = None


def exec_error(action: str, exc: ApiException | aiohttp.ClientError | TimeoutError) -> SandboxStartError:
    """A start error for an exec the API refused (the handshake's status) or that broke."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        hint = _HINTS.get(exc.status, "the API server refused the websocket")
        return SandboxStartError(f"kubernetes API refused to {action}: {exc.status} {exc.message} ({hint})")
    return api_error(action, exc)


async def upload_payload(
    pod_exec: PodExec, settings: KataSettings, namespace: str, pod: str, payload: bytes
) -> None:
    """Write ``payload`` into the pod's scratch dir, where its waiting runner picks it up.

    Raises:
        SandboxStartError: the exec was refused or broke, or the receiver failed (e.g. no room).
    """
    errors = bytearray()
    action = f"exec into pod {namespace}/{pod} to send the run's files"
    try:
        status = await pod_exec.run(
            namespace,
            pod,
            upload_command(settings),
            f"{len(payload)}\n".encode() + payload,
            on_stdout=lambda _: None,
            on_stderr=errors.extend,
        )
    except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
        raise exec_error(action, exc) from exc
    if not status.ok:
        said = errors.decode("utf-8", "replace").strip().splitlines()[-1:] or [status.message]
        raise SandboxStartError(
            f"sending the run's files ({len(payload)} bytes) into pod {namespace}/{pod} failed "
            f"(exit {status.exit_code}): {said[0]}; a larger disk_mb gives the scratch dir more room"
        )
    logger.debug("sent %d bytes into %s/%s", len(payload), namespace, pod)
