"""The browser as a Kata pod: Chromium with a DevTools port, reached by Playwright over CDP.

The local backend hands Chromium a pipe (``--remote-debugging-pipe``, :mod:`sandbox.browser`); a
pod cannot take host pipes, so here Chromium listens on ``127.0.0.1:9222`` inside the pod (it binds
no other address, whatever ``--remote-debugging-address`` says) and the in-pod runner, in service
mode, relays the pod's port :data:`~sandbox.kata.manifests.RELAY_PORT` to it. The platform server
connects to ``http://<pod IP>:18080`` (``infra/``'s NetworkPolicies let only the server in).

A session is a ConfigMap (runner + job) and a Pod (:func:`~sandbox.kata.manifests.browser_pod`:
the hardening of every sandbox pod, requests = limits from the browser limits, label
``agentic.dev/role=browser``, the tenant, an expiry). Its only network is the egress proxy:
``--proxy-server`` is ``egress_proxy_url`` and ``--proxy-bypass-list=<-loopback>`` sends loopback
names there too. When the proxy wants run identities (``egress_identity_secret``), Chromium cannot
carry them (``--proxy-server`` takes no credentials, and it answers a 407 only through whoever
drives it), so ``--proxy-server`` is the runner's egress relay on ``127.0.0.1``
(:data:`~sandbox.kata.job.EGRESS_RELAY_PORT`), which adds the session's signed identity to each
request head: every request of the pod, Chromium's own included, is logged with tenant and run,
and callers keep an ordinary Playwright ``Browser``. (Playwright can answer the 407 itself, with
``new_context(proxy={..., "username", "password"})`` over ``connect_over_cdp``, and does with this
Chromium; but only for contexts made that way, intercepting their requests over CDP.)
The session ends at ``wall_seconds`` after it was created (the handle deletes the
pod), or earlier on ``terminate()``; ``activeDeadlineSeconds`` (wall + grace) is the cluster's
backstop and the reaper deletes what a dead server left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from urllib.parse import urlsplit

import aiohttp

from sandbox.base import EndReason, RunRequest, RunResult
from sandbox.errors import SandboxStartError
from sandbox.kata.egress import pod_proxy_url
from sandbox.kata.frames import FrameReader
from sandbox.kata.job import EGRESS_RELAY_PORT, build_job, egress_relay
from sandbox.kata.kube import ApiException, KubeApi
from sandbox.kata.manifests import RELAY_PORT, SCRATCH, browser_pod, run_configmap
from sandbox.kata.naming import object_labels, run_name
from sandbox.kata.outcome import has_started, is_finished, scheduling_message, start_problem
from sandbox.kata.pod_run import delete_run_objects, finish_shielded, to_json
from sandbox.kata.settings import KataSettings
from sandbox.kata.watch import PodWatcher, pod_log_lines
from sandbox.service import ServiceEndpoint, ServiceHandle

__all__ = ["CDP_PORT", "KataBrowserHandle", "browser_argv", "start_browser"]

logger = logging.getLogger(__name__)

CDP_PORT = 9222  # Chromium's DevTools port inside the pod
PROFILE_DIR = f"{SCRATCH}/work/profile"
# Flags the backend owns: whatever the caller's argv says about them is dropped.
_OURS = ("--remote-debugging-", "--user-data-dir", "--proxy-", "--no-proxy-server", "--load-extension")


def browser_argv(settings: KataSettings, requested: tuple[str, ...], proxy_url: str) -> list[str]:
    """Chromium's argv in the pod: our binary, the caller's flags, then the DevTools port and proxy.

    ``proxy_url``: the session's (:func:`~sandbox.kata.egress.pod_proxy_url`); one with credentials
    is reached through the runner's egress relay.
    """
    flags = [a for a in requested[1:] if a.startswith("--") and not a.startswith(_OURS)]
    proxy = f"http://127.0.0.1:{EGRESS_RELAY_PORT}" if egress_relay(proxy_url) else proxy_url
    return [
        settings.browser_path,
        *flags,
        f"--remote-debugging-port={CDP_PORT}",
        f"--user-data-dir={PROFILE_DIR}",
        f"--proxy-server={proxy}",
        "--proxy-bypass-list=<-loopback>",
        # No tab of its own: Playwright's connect_over_cdp waits for every page that exists when it
        # attaches, and a first tab whose navigation hangs (its start page through the proxy) held
        # a session's connect for the whole timeout. Callers open their own contexts and pages.
        "--no-startup-window",
    ]


class KataBrowserHandle(ServiceHandle):
    """A browser pod: ``endpoint.url`` is its DevTools HTTP endpoint (``connect_over_cdp``)."""

    def __init__(self, name: str, *, namespace: str) -> None:
        super().__init__(name)
        self.namespace = namespace
        self.pod_ip: str | None = None

    async def wait_ready(self, timeout_s: float = 20.0) -> bool:
        """Wait until Chromium answers ``/json/version`` through the pod's port (False: ended, timed out)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running:
            if self.endpoint is not None and self.endpoint.url is not None:
                if await _devtools_answers(self.endpoint.url):
                    return True
            await asyncio.sleep(0.1)
        return False


async def _devtools_answers(url: str) -> bool:
    """True when DevTools' HTTP endpoint at ``url`` answers 200 (the relay accepts before Chromium)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        # DevTools answers HTTP/1.1 only, and only when the Host is an IP address or localhost.
        writer.write(
            f"GET /json/version HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 2.0)
        return head.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def start_browser(
    api: KubeApi,
    settings: KataSettings,
    request: RunRequest,
    *,
    namespace: str,
    runner: bytes,
) -> KataBrowserHandle:
    """Create the session's pod, wait until it runs with an IP, return its handle.

    ``request``: Chromium's argv (``command``; the binary is replaced by ``browser_path``), the
    browser limits and the labels, as the platform's browser pool builds it.

    Raises:
        SandboxStartError: no browser image or egress proxy configured, the API refused an object,
            or the pod did not run within ``start_timeout_s`` (nothing is left behind then).
    """
    if not settings.browser_image:
        raise SandboxStartError(
            "the kata backend has no browser image; fix: set AGENTIC_SANDBOX_KATA_BROWSER_IMAGE "
            "(an image with python3 and Chromium at AGENTIC_SANDBOX_KATA_BROWSER_PATH)"
        )
    if not settings.egress_proxy_url:
        raise SandboxStartError(
            "the browser's only network is the egress proxy; fix: set AGENTIC_SANDBOX_KATA_EGRESS_PROXY_URL"
        )
    started = time.monotonic()
    limits = request.limits
    name = run_name("agentic-browser")
    proxy_url = pod_proxy_url(settings, request.labels, run=name, life_s=limits.wall_seconds)
    assert proxy_url is not None
    argv = browser_argv(settings, request.command or ("chromium",), proxy_url)
    job = await build_job(
        dataclasses.replace(request, command=tuple(argv), args=(), network=True),
        python=settings.python_path,
        max_bytes=settings.configmap_max_bytes,
        egress_proxy_url=proxy_url,
        service_port=CDP_PORT,
        relay_egress=True,
    )
    ttl = limits.wall_seconds + settings.deadline_grace_s
    labels = object_labels(request.labels, role="browser", ttl_s=ttl, network=True, run=name)
    configmap = run_configmap(name, namespace, labels, job.configmap_data(runner))
    pod = browser_pod(name, namespace, labels, settings, image=settings.browser_image, limits=limits)
    handle = KataBrowserHandle(name, namespace=namespace)
    watcher: PodWatcher | None = None
    made_pod = False
    try:
        await api.create(
            f"create ConfigMap {namespace}/{name}",
            lambda: api.core.create_namespaced_config_map(namespace, configmap),  # type: ignore[arg-type]
            lambda: api.core.read_namespaced_config_map(name, namespace),
        )
        created = await api.create(
            f"create pod {namespace}/{name}",
            lambda: api.core.create_namespaced_pod(namespace, pod),  # type: ignore[arg-type]
            lambda: api.core.read_namespaced_pod(name, namespace),
        )
        made_pod = True
        watcher = PodWatcher(api, namespace, name, to_json(api, created))
        watcher.start()
        await _wait_running(watcher, settings, namespace, name)
        handle.pod_ip = str(watcher.pod["status"]["podIP"])
        handle.endpoint = ServiceEndpoint(url=f"http://{handle.pod_ip}:{RELAY_PORT}")
    except BaseException:
        if watcher is not None:
            await watcher.stop()
        await finish_shielded(delete_run_objects(api, namespace, name, pod=made_pod, configmap=True))
        raise
    logger.info("browser pod %s/%s runs at %s", namespace, name, handle.pod_ip)
    handle.start(_lifetime(api, watcher, handle, limits.wall_seconds - (time.monotonic() - started), started))
    return handle


async def _wait_running(watcher: PodWatcher, settings: KataSettings, namespace: str, name: str) -> None:
    ready = await watcher.wait_for(
        lambda p: (
            (has_started(p) and bool(p.get("status", {}).get("podIP")))
            or is_finished(p)
            or start_problem(p) is not None
        ),
        settings.start_timeout_s,
    )
    if (problem := start_problem(watcher.pod)) is not None:
        raise SandboxStartError(f"browser pod {namespace}/{name} cannot start: {problem}")
    if watcher.gone or is_finished(watcher.pod):
        raise SandboxStartError(f"browser pod {namespace}/{name} ended before Chromium started")
    if not ready:
        raise SandboxStartError(
            f"browser pod {namespace}/{name} did not run within {settings.start_timeout_s:.0f} s "
            f"({scheduling_message(watcher.pod)})"
        )


async def _follow_log(api: KubeApi, namespace: str, name: str, handle: KataBrowserHandle) -> None:
    """Keep Chromium's newest output in the handle (for the error when it does not come up)."""
    reader = FrameReader(None, handle, keep=False)
    with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError, ValueError):
        lines = pod_log_lines(api, namespace, name, timeout_s=24 * 3600.0)
        async with contextlib.aclosing(lines):
            async for line in lines:
                reader.feed(line)
    reader.finish()


async def _lifetime(
    api: KubeApi, watcher: PodWatcher, handle: KataBrowserHandle, remaining_s: float, started: float
) -> RunResult:
    """Until the session's time is up or the pod ends; then delete its objects."""
    namespace, name = handle.namespace, handle.name
    follower = asyncio.create_task(_follow_log(api, namespace, name, handle))
    try:
        ended = await watcher.wait_for(lambda p: is_finished(p), max(0.0, remaining_s))
        reason = EndReason.EXIT if ended or watcher.gone else EndReason.TIMEOUT
        if reason is EndReason.TIMEOUT:
            logger.info("browser pod %s/%s reached the session's wall limit; deleting it", namespace, name)
        return RunResult(
            exit_code=0 if reason is EndReason.EXIT else -9,
            stdout="",
            stderr="",
            reason=reason,
            duration_s=round(time.monotonic() - started, 3),
            backend="kata",
        )
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower
        with contextlib.suppress(BaseException):
            await asyncio.shield(watcher.stop())
        await finish_shielded(delete_run_objects(api, namespace, name, pod=True, configmap=True))
