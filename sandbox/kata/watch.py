"""Follow one pod's status with a watch that survives disconnects, and stream its log.

Why not ``kubernetes.aio.watch.Watch``: it reconnects only on a clean end of stream and raises on
a dropped connection. :class:`PodWatcher` resumes from the last ``resourceVersion`` it saw; after
a failure (a dropped connection, ``410 Gone`` for a too-old version, a 5xx) it reads the pod once
(a poll) and watches again from that version, with a growing pause, so a flaky API server costs
polls, never a lost state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import aiohttp

from sandbox.kata.kube import ApiException, KubeApi, is_missing

__all__ = ["Json", "PodWatcher", "pod_log_lines", "raise_for_status", "stream_lines"]

logger = logging.getLogger(__name__)

Json = dict[str, Any]
_WATCH_TIMEOUT_S = 240  # server-side end of one watch request (we then watch again)
_MAX_PAUSE_S = 2.0
_MAX_LINE = 1 << 20  # a longer log line is dropped (frames are ~11 KB)


async def raise_for_status(response: aiohttp.ClientResponse) -> None:
    """Turn a streamed (not preloaded) response's error status into an :class:`ApiException`."""
    if response.status >= 400:
        body = (await response.read()).decode("utf-8", "replace")
        response.release()
        raise ApiException(status=response.status, reason=response.reason, body=body)


async def stream_lines(
    response: aiohttp.ClientResponse, *, complete_only: bool = False
) -> AsyncIterator[bytes]:
    """The lines of a streamed body; an overlong line is cut off rather than buffered.

    ``complete_only``: drop a last line without its newline (a stream cut mid-line is read again
    from the start later, and a half line counted now would be skipped then).
    """
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
        if len(pending) > _MAX_LINE:
            yield pending[:_MAX_LINE]
            pending = b""
    if pending and not complete_only:
        yield pending


async def pod_log_lines(
    api: KubeApi, namespace: str, name: str, *, timeout_s: float, complete_only: bool = False
) -> AsyncGenerator[bytes, None]:
    """Follow a pod's log line by line (:func:`stream_lines`); the response is released however it ends.

    Raises:
        ApiException: the API refused the log request.
    """
    response = await api.core.read_namespaced_pod_log_without_preload_content(
        name, namespace, follow=True, _request_timeout=timeout_s
    )
    await raise_for_status(response)
    try:
        async for line in stream_lines(response, complete_only=complete_only):
            yield line
    finally:
        response.release()


class PodWatcher:
    """The latest state of one pod, kept current by a background watch (``start`` / ``stop``)."""

    def __init__(self, api: KubeApi, namespace: str, name: str, pod: Json) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.pod: Json = pod  # the newest object seen
        self.gone = False  # the pod was deleted (by someone else, or after an eviction)
        self.resumes = 0  # how often the watch was resumed after a failure (tests, logs)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @property
    def resource_version(self) -> str | None:
        version = self.pod.get("metadata", {}).get("resourceVersion")
        return str(version) if version else None

    def start(self) -> None:
        """Begin watching (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"watch-{self.name}")

    async def stop(self) -> None:
        """Stop watching; safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_for(self, predicate: Callable[[Json], bool], timeout_s: float) -> bool:
        """Wait until ``predicate(pod)`` holds or the pod is gone; False on timeout."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.gone or predicate(self.pod)), timeout=timeout_s
                )
            except TimeoutError:
                return False
        return True

    async def _update(self, pod: Json | None) -> None:
        async with self._changed:
            if pod is None:
                self.gone = True
            else:
                self.pod = pod
            self._changed.notify_all()

    async def _poll(self) -> None:
        """Read the pod once (after a failed watch): its state and a fresh version to watch from."""
        try:
            pod = await self.api.core.read_namespaced_pod_without_preload_content(self.name, self.namespace)
            await raise_for_status(pod)
            await self._update(json.loads(await pod.read()))
        except ApiException as exc:
            if is_missing(exc):
                await self._update(None)
            else:
                raise

    async def _loop(self) -> None:
        pause = 0.1
        while not self.gone:
            try:
                await self._watch_once()  # ended by the server: watch again from the same version
                pause = 0.1
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                raise
            except (ApiException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.resumes += 1
                logger.info(
                    "watch of pod %s/%s broke (%r); polling, then watching again",
                    self.namespace,
                    self.name,
                    exc,
                )
                await asyncio.sleep(pause)
                pause = min(_MAX_PAUSE_S, pause * 2)
                with contextlib.suppress(ApiException, aiohttp.ClientError, TimeoutError, ValueError):
                    await self._poll()

    async def _watch_once(self) -> None:
        """One watch request from the newest version seen, until it ends or breaks."""
        response = await self.api.core.list_namespaced_pod_without_preload_content(
            self.namespace,
            field_selector=f"metadata.name={self.name}",
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self.resource_version,
            timeout_seconds=_WATCH_TIMEOUT_S,
            _request_timeout=_WATCH_TIMEOUT_S + 30,
        )
        await raise_for_status(response)
        try:
            async for line in stream_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("reason"), body=json.dumps(obj))
                if kind == "BOOKMARK":
                    version = obj.get("metadata", {}).get("resourceVersion")
                    if version:
                        self.pod.setdefault("metadata", {})["resourceVersion"] = version
                elif kind == "DELETED":
                    await self._update(None)
                    return
                elif kind in ("ADDED", "MODIFIED"):
                    await self._update(obj)
        finally:
            response.release()
