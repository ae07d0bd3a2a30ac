"""Instances on Unikraft Cloud through the official SDK: create, start, read, stop, delete, list ours.

Why a module of its own: every API call of the backend goes through here, so errors are turned into
the sandbox's own (:func:`translate`) in one place, and names and tags follow one scheme:

* a name ``<prefix>-<kind>-<random>`` (``kind``: ``run``, ``pool`` or ``app``);
* tags ``<prefix>``, ``<prefix>-kind=<kind>`` and ``<prefix>-expires=<unix time>``: the reaper
  (:mod:`sandbox.unikraft.reaper`) deletes ours whose expiry passed, whichever process made them.

Error mapping (the SDK's classes on the left):

* ``AuthenticationError`` (401/403) -> :class:`SandboxStartError` naming the token settings;
* ``RateLimitError`` (429) -> :class:`SandboxBusyError` (retry later: the server answers 429);
* a refusal that mentions a quota -> :class:`SandboxStartError` saying which quota;
* an instance that stopped while booting because its image could not be pulled, or a missing image
  -> :class:`SandboxStartError` naming the image and the setting;
* a 404 -> :class:`SandboxStartError` naming the base URL / metro settings;
* anything else (5xx, network, parse) -> :class:`SandboxStartError` with the API's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from unikraft_cloud import (
    AuthenticationError,
    Instance,
    InstanceStoppedError,
    KernelStopReason,
    NotFoundError,
    PlatformStopCode,
    RateLimitError,
    Sandbox,
    UnikraftCloud,
    UnikraftCloudError,
    WaitTimeoutError,
)
from unikraft_cloud.api.platform import models

from sandbox.base import EndReason
from sandbox.config import UnikraftSettings
from sandbox.errors import SandboxBusyError, SandboxError, SandboxStartError

__all__ = [
    "ENOMEM",
    "InstanceControl",
    "describe_stop",
    "end_reason_of_stop",
    "expiry_of",
    "translate",
]

logger = logging.getLogger(__name__)

ENOMEM = 12
RATE_LIMIT_RETRY_S = 5


def _message(exc: UnikraftCloudError) -> str:
    messages = [str(exc), *(e.message or "" for e in exc.errors or ())]
    return "; ".join(dict.fromkeys(m for m in messages if m))


def translate(exc: UnikraftCloudError, what: str, settings: UnikraftSettings) -> SandboxError:
    """The sandbox error for an SDK failure while doing ``what`` (see the module docstring)."""
    detail = _message(exc)
    if isinstance(exc, AuthenticationError):
        return SandboxStartError(
            f"Unikraft Cloud refused the token while {what} (HTTP {exc.status}): {detail}; fix: set "
            "AGENTIC_SANDBOX_UNIKRAFT_TOKEN (or UKC_TOKEN) to a valid token for this metro"
        )
    if isinstance(exc, RateLimitError):
        return SandboxBusyError(
            f"Unikraft Cloud is rate-limiting us while {what}: {detail}; retry later", RATE_LIMIT_RETRY_S
        )
    if "quota" in detail.lower():
        return SandboxStartError(
            f"Unikraft Cloud quota exhausted while {what}: {detail}; fix: raise the account's quota, "
            "lower the pool size or the tier's memory, or wait for running sandboxes to end"
        )
    if isinstance(exc, NotFoundError):
        return SandboxStartError(
            f"Unikraft Cloud answered 404 while {what}: {detail}; fix: check "
            f"AGENTIC_SANDBOX_UNIKRAFT_BASE_URL / _METRO ({settings.platform_url})"
        )
    if exc.kind == "network":
        return SandboxStartError(
            f"cannot reach Unikraft Cloud at {settings.platform_url} while {what}: {detail}"
        )
    status = f"HTTP {exc.status}" if exc.status else exc.kind
    return SandboxStartError(f"Unikraft Cloud failed while {what} ({status}): {detail}")


def end_reason_of_stop(instance: Instance) -> EndReason:
    """Why a run ended when its instance stopped under it: OOM when the kernel ran out of memory."""
    stop = instance.stop
    kernel = stop.kernel_code if stop is not None else None
    if kernel is not None and kernel.reason == KernelStopReason.PGFAULT and kernel.errno == ENOMEM:
        return EndReason.OOM
    return EndReason.KILLED


def describe_stop(instance: Instance) -> str:
    """The platform's account of why ``instance`` stopped, in words (for logs and errors)."""
    return instance.describe_stop() or f"state {instance.state}"


def expiry_of(instance: Instance, prefix: str) -> float | None:
    """The expiry time carried in ``instance``'s tags, or None when it carries none."""
    key = f"{prefix}-expires="
    for tag in instance.tags or ():
        if tag.startswith(key):
            with contextlib.suppress(ValueError):
                return float(tag[len(key) :])
    return None


class InstanceControl:
    """The instance operations one backend needs, on one metro, through one SDK client."""

    def __init__(self, client: UnikraftCloud, settings: UnikraftSettings) -> None:
        self.client = client
        self.settings = settings

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn SDK failures inside the block into sandbox errors (chained)."""
        try:
            yield
        except UnikraftCloudError as exc:
            raise translate(exc, what, self.settings) from exc

    def new_name(self, kind: str) -> str:
        """A fresh instance name of ``kind`` under our prefix."""
        return f"{self.settings.name_prefix}-{kind}-{secrets.token_hex(6)}"

    def tags(self, kind: str, expires_at: float, extra: Sequence[str] = ()) -> list[str]:
        """Our tags for an instance of ``kind`` that the reaper may delete after ``expires_at``."""
        prefix = self.settings.name_prefix
        return [prefix, f"{prefix}-kind={kind}", f"{prefix}-expires={math.ceil(expires_at)}", *extra]

    def plugin_spec(self) -> list[dict[str, Any]]:
        """The sandbox plugin, attached to every instance we create."""
        return [{"name": "sandbox", "image": self.settings.plugin_image, "config": {}}]

    async def create(
        self,
        *,
        kind: str,
        image: str,
        memory_mb: int,
        vcpus: int,
        expires_at: float,
        autostart: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> Instance:
        """Create an instance (and with ``autostart`` wait until it runs); return it as read back.

        Raises:
            SandboxStartError: the API refused, the image is missing, or it did not boot in time
                (an instance left behind by a failed boot is deleted first).
            SandboxBusyError: rate-limited.
        """
        spec: dict[str, Any] = {
            "name": self.new_name(kind),
            "image": image,
            "memory_mb": memory_mb,
            "vcpus": vcpus,
            "autostart": autostart,
            "plugins": self.plugin_spec(),
            "tags": self.tags(kind, expires_at),
            "restart_policy": "never",
            **(extra or {}),
        }
        if autostart:
            spec["timeout_s"] = self.settings.boot_timeout_s
        what = f"creating an instance of {image}"
        try:
            return await self.client.instances.create(**spec)
        except InstanceStoppedError as exc:
            await self.delete(exc.instance.uuid)
            stop = exc.stop
            if stop is not None and stop.platform_code == PlatformStopCode.IMAGE_PULL_FAILED:
                raise SandboxStartError(
                    f"Unikraft Cloud cannot pull image {image!r} ({stop}); fix: push the image or "
                    "correct AGENTIC_SANDBOX_UNIKRAFT_IMAGES"
                ) from exc
            raise SandboxStartError(f"instance of {image} stopped while booting: {exc}") from exc
        except WaitTimeoutError as exc:
            for entry in exc.errors or ():
                await self.delete(entry.uuid)
            raise SandboxStartError(
                f"instance of {image} did not boot within {self.settings.boot_timeout_s} s "
                f"(state {exc.state}); fix: raise AGENTIC_SANDBOX_UNIKRAFT_BOOT_TIMEOUT_S or check the image"
            ) from exc
        except UnikraftCloudError as exc:
            raise translate(exc, what, self.settings) from exc

    async def start(self, uuid: str) -> Instance:
        """Start a stopped instance, wait until it runs, and return it as read back.

        Raises:
            NotFoundError: the instance is gone (reaped or deleted meanwhile); the caller falls back.
            SandboxStartError, SandboxBusyError: as :meth:`create`.
        """
        body = [models.StartInstancesRequestItem(uuid=uuid, timeout_s=self.settings.boot_timeout_s)]
        try:
            res = await self.client.api.platform.instances.start_instances(body=body)
        except NotFoundError:
            raise
        except UnikraftCloudError as exc:
            raise translate(exc, f"starting instance {uuid}", self.settings) from exc
        for item in (res.data.instances if res.data else None) or []:
            if item.status == "error":
                if item.error == 8:  # the API's code for a missing resource
                    raise NotFoundError(f"instance {uuid} not found", absent=True)
                raise SandboxStartError(f"Unikraft Cloud could not start instance {uuid}: {item.message}")
        return await self.read(uuid)

    async def read(self, uuid: str) -> Instance:
        """The instance's full details (state, stop reason, boot time, domains)."""
        with self.errors(f"reading instance {uuid}"):
            return await self.client.instances.get(uuid=uuid)

    async def stop(self, uuid: str) -> None:
        """Force-stop the instance (it is deleted next; a stop that fails is left to the delete)."""
        body = [models.StopInstancesRequestItem(uuid=uuid, force=True)]
        try:
            await self.client.api.platform.instances.stop_instances(body=body)
        except UnikraftCloudError as exc:
            logger.info("unikraft: stopping %s failed (%s); deleting it anyway", uuid, exc)

    async def delete(self, uuid: str | None) -> bool:
        """Delete the instance, retrying API failures; False when it could not be deleted (logged).

        A missing instance counts as deleted. What could not be deleted carries an expiry tag, so
        the reaper removes it later.
        """
        if uuid is None:
            return True
        for attempt in range(self.settings.delete_attempts):
            try:
                await self.client.instances.get(uuid=uuid).delete(missing_ok=True)
                return True
            except UnikraftCloudError as exc:
                logger.warning(
                    "unikraft: deleting instance %s failed (attempt %d): %s", uuid, attempt + 1, exc
                )
                await asyncio.sleep(0.2 * 2**attempt)
        return False

    def sandbox(self, uuid: str) -> Sandbox:
        """The sandbox plugin of instance ``uuid`` (nothing is sent until it is used)."""
        return self.client.instances.get(uuid=uuid).sandbox()

    async def list_ours(self) -> list[Instance]:
        """Every instance of this metro carrying our prefix tag."""
        with self.errors("listing instances"):
            return await self.client.instances.list(details=True, tags=[self.settings.name_prefix])

    def now(self) -> float:
        """Wall-clock time for expiry tags (a method so tests and the reaper agree)."""
        return time.time()
