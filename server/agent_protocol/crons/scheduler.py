"""The cron scheduler of one server process: fires due crons into the run queue, once each.

Every process runs one. It sleeps until the earliest fire it knows of (at most ``cron_poll_s``,
so crons made through other processes are seen), reads the due crons and fires each: the run is
built and checked first (the assistant's active version resolved for the cron's tenant, its
context checked by the operator's policy as it is *now*), then one transaction claims the fire by
compare-and-set on ``next_run_at`` and queues the run (:meth:`~server.agent_protocol.storage.
crons.CronStore.fire`). Several processes racing for one fire make one run; the others find the
fire taken. The run then goes the way of every run: any process's worker claims it.

Missed fires (no server ran at the time) are not made up: a cron found late fires once, and its
next fire is the first scheduled one after now (and at least ``cron_min_interval_s`` after the one
just made). A fire that cannot be made (its assistant was deleted, the operator's bounds were
lowered below its context) is skipped and logged, and the cron stays scheduled; a thread cron
whose thread is gone is deleted; ``multitask_strategy="reject"`` skips the fire while the thread
is busy, ``interrupt`` / ``rollback`` cancel the thread's active runs after queueing the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime

from pydantic import ValidationError

from server import logs
from server.agent_protocol.assistants import Assistants
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.crons.schedule import check_timezone, following_fire
from server.agent_protocol.errors import AgentProtocolError
from server.agent_protocol.runs.manager import RunManager
from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.serde import dumps_to_obj
from server.agent_protocol.status import CancelAction
from server.agent_protocol.storage.crons import CronRecord, CronStore, FireOutcome, FireRun
from server.metrics import CRON_FIRES

__all__ = ["CronScheduler"]

logger = logging.getLogger(__name__)

_BATCH = 50  # due crons read per look
_MIN_SLEEP_S = 0.01


class CronScheduler:
    """Fires the due crons of all tenants into the run queue; one per server process."""

    def __init__(
        self,
        store: CronStore,
        assistants: Assistants,
        manager: RunManager,
        settings: AgentProtocolSettings,
    ) -> None:
        self._store = store
        self._assistants = assistants
        self._manager = manager
        self._settings = settings
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop (the first look at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="cron-scheduler")

    def wake(self) -> None:
        """Look again now (a cron was made or changed here)."""
        self._wakeup.set()

    async def close(self) -> None:
        """Stop the loop; idempotent. A fire in progress is one transaction: made whole or not at all."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            delay = self._settings.cron_poll_s
            try:
                await self.fire_due()
                earliest = await self._store.earliest()
                if earliest is not None:
                    delay = min(delay, max(_MIN_SLEEP_S, earliest - time.time()))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("firing crons failed; retrying in %s s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    async def fire_due(self, now: float | None = None) -> list[FireOutcome]:
        """Fire every cron due at ``now``; returns what each fire did."""
        now = time.time() if now is None else now
        outcomes = []
        for cron in await self._store.due(now, _BATCH):
            with logs.bound(tenant=cron.tenant, thread_id=cron.thread_id):
                outcomes.append(await self._fire(cron, now))
        return outcomes

    def _next_at(self, cron: CronRecord, now: float) -> float | None:
        assert cron.next_run_at is not None  # only due crons are fired
        try:
            zone = check_timezone(cron.timezone)
        except AgentProtocolError:  # a zone the host no longer knows: stop rather than fail each tick
            return None
        after = following_fire(cron.schedule, zone, cron.next_run_at, now, self._settings.cron_min_interval_s)
        return after if after is None or cron.end_at is None or after <= cron.end_at else None

    async def _fire(self, cron: CronRecord, now: float) -> FireOutcome:
        next_at = self._next_at(cron, now)
        try:
            assistant = await self._assistants.resolve(str(cron.payload.get("assistant_id")), cron.tenant)
            run = self._assistants.run_payload(assistant, RunCreate.model_validate(cron.payload))
        except (AgentProtocolError, ValidationError) as exc:
            logger.warning("cron %s: fire skipped, its run cannot be made: %s", cron.cron_id, exc)
            await self._store.skip(cron, next_at)
            CRON_FIRES.labels(outcome="skipped").inc()
            return FireOutcome("skipped")
        fire = datetime.fromtimestamp(cron.next_run_at or now, UTC).isoformat()  # the scheduled time
        stateless = cron.thread_id is None
        if stateless:
            run = run.model_copy(
                update={"on_completion": cron.on_run_completed or "delete", "if_not_exists": "create"}
            )
        else:
            run = run.model_copy(update={"on_completion": None})
        fire_run = FireRun(
            run_id=str(uuid.uuid4()),
            thread_id=cron.thread_id or str(uuid.uuid4()),
            kwargs=dumps_to_obj(run.model_dump(exclude_none=True)),
            metadata={**cron.metadata, **(run.metadata or {}), "cron_id": cron.cron_id, "cron_fire": fire},
            multitask_strategy=run.multitask_strategy,
            thread_metadata=self._manager.thread_metadata(assistant_id=assistant.assistant_id)
            if stateless
            else None,
        )
        strategy = run.multitask_strategy
        outcome = await self._store.fire(cron, next_at, fire_run, reject_if_busy=strategy == "reject")
        CRON_FIRES.labels(outcome=outcome.what).inc()
        if outcome.what == "fired":
            logger.info(
                "cron %s fired run %s on thread %s", cron.cron_id, fire_run.run_id, fire_run.thread_id
            )
            self._manager.wake_worker()
            if strategy in ("interrupt", "rollback"):
                for run_id in outcome.active:
                    await self._manager.cancel(run_id, action=CancelAction(strategy))
        elif outcome.what == "gone":
            logger.warning("cron %s deleted: its thread %s is gone", cron.cron_id, cron.thread_id)
        elif outcome.what == "busy":
            logger.info("cron %s: fire skipped, thread %s is busy (reject)", cron.cron_id, cron.thread_id)
        return outcome
