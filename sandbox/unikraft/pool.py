"""A pool of stopped instances, started on demand: a run skips the create and the image placement.

Why stopped and not running: a stopped instance holds no live memory or vCPU quota and costs
nothing while it waits, and starting it is one request. Each pooled instance serves exactly one run
(then it is deleted, like any run's instance), and the pool refills in the background.

Shapes: the pool keeps ``pool_size`` instances per library set and per tier in ``pool_tiers``, each
sized as the tier (``tier_memory_mb``, the tier's vCPUs). A run takes the smallest shape that holds
its limits, so in pool mode a run's memory is rounded up to its tier's; a run larger than every
pooled shape gets an instance of its own.

Pooled instances carry an expiry ``pool_ttl_s`` away; the pool hands out none within a minute of
it (the reaper may take it) and replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from unikraft_cloud import NotFoundError

from sandbox.errors import SandboxError
from sandbox.resources import TIERS
from sandbox.unikraft.instances import InstanceControl

__all__ = ["InstancePool", "PoolShape", "PooledInstance"]

logger = logging.getLogger(__name__)

EXPIRY_MARGIN_S = 60.0


@dataclass(frozen=True)
class PoolShape:
    """One kind of pooled instance: which image (library set), how much memory, how many vCPUs."""

    library_set: str
    memory_mb: int
    vcpus: int


@dataclass(frozen=True)
class PooledInstance:
    """A stopped instance waiting in the pool."""

    uuid: str
    expires_at: float


class InstancePool:
    """Stopped instances per shape, refilled in the background; see the module docstring."""

    def __init__(self, control: InstanceControl) -> None:
        self._control = control
        settings = control.settings
        self.shapes: list[PoolShape] = []
        if settings.pool_size > 0:
            for library_set in sorted(settings.images):
                for tier in settings.pool_tiers:
                    memory = settings.tier_memory_mb.get(tier, TIERS[tier].memory_mb)
                    vcpus = math.ceil(TIERS[tier].cpus)
                    self.shapes.append(PoolShape(library_set, memory, vcpus))
            self.shapes.sort(key=lambda s: (s.memory_mb, s.vcpus))
        self._ready: dict[PoolShape, list[PooledInstance]] = {shape: [] for shape in self.shapes}
        self._filling: dict[PoolShape, int] = {shape: 0 for shape in self.shapes}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def shape_for(self, library_set: str, memory_mb: int, vcpus: int) -> PoolShape | None:
        """The smallest pooled shape that holds a run's limits, or None."""
        for shape in self.shapes:
            if shape.library_set == library_set and shape.memory_mb >= memory_mb and shape.vcpus >= vcpus:
                return shape
        return None

    def take(self, shape: PoolShape) -> PooledInstance | None:
        """A pooled instance of ``shape`` (none if empty); the pool refills behind it."""
        entries = self._ready[shape]
        now = self._control.now()
        while entries:
            entry = entries.pop(0)
            if entry.expires_at - now > EXPIRY_MARGIN_S:
                self.refill()
                return entry
            self._spawn(self._discard(entry))  # close to its expiry: the reaper's, not a run's
        self.refill()
        return None

    def refill(self) -> None:
        """Top every shape up to ``pool_size`` in the background."""
        if self._closed:
            return
        for shape in self.shapes:
            missing = self._control.settings.pool_size - len(self._ready[shape]) - self._filling[shape]
            for _ in range(max(0, missing)):
                self._filling[shape] += 1
                self._spawn(self._add(shape))

    def size(self) -> int:
        """How many instances wait in the pool now."""
        return sum(len(entries) for entries in self._ready.values())

    async def _add(self, shape: PoolShape) -> None:
        control = self._control
        expires = control.now() + control.settings.pool_ttl_s
        try:
            instance = await control.create(
                kind="pool",
                image=control.settings.images[shape.library_set],
                memory_mb=shape.memory_mb,
                vcpus=shape.vcpus,
                expires_at=expires,
                autostart=False,
            )
        except SandboxError as exc:
            logger.warning("unikraft: could not add a pooled instance for %s: %s", shape, exc)
            return
        finally:
            self._filling[shape] -= 1
        if instance.uuid is None:
            return
        if self._closed:
            await control.delete(instance.uuid)
            return
        self._ready[shape].append(PooledInstance(instance.uuid, expires))

    async def _discard(self, entry: PooledInstance) -> None:
        with contextlib.suppress(NotFoundError):
            await self._control.delete(entry.uuid)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop refilling and delete every pooled instance; idempotent."""
        self._closed = True
        tasks = list(self._tasks)
        if tasks:  # creates under way delete their instance once done (cancelled, it would linger)
            _, pending = await asyncio.wait(tasks, timeout=self._control.settings.request_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        entries = [entry for waiting in self._ready.values() for entry in waiting]
        for waiting in self._ready.values():
            waiting.clear()
        await asyncio.gather(*(self._control.delete(entry.uuid) for entry in entries))
