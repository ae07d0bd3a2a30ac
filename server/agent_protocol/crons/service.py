"""Crons of tenants: created, changed, listed and deleted, each checked before anything is stored.

A cron's run is checked as a run is when it is created or patched: its assistant resolved through
:meth:`~server.agent_protocol.assistants.Assistants.resolve` (another tenant's is missing) and its
context through the operator's policy (:meth:`~server.agent_protocol.assistants.Assistants.
run_payload`), so a cron cannot carry what a run may not. The schedule is checked with croniter
(:mod:`.schedule`), the tenant's number of crons against ``cron_max_per_tenant``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from server.agent_protocol.assistants import Assistants
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.crons.schedule import check_schedule, check_timezone
from server.agent_protocol.crons.schemas import CronCount, CronPatch, CronSearch, ThreadCronCreate, epoch
from server.agent_protocol.errors import (
    CronLimitError,
    CronNotFoundError,
    InvalidCronError,
    ThreadNotFoundError,
)
from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.storage.crons import CronRecord, CronStore
from server.agent_protocol.storage.store import ProtocolStore

__all__ = ["Crons"]

_SCHEDULING = ("schedule", "timezone", "end_time", "enabled")  # a change re-plans the next fire


def _storable(value: str | None) -> bool:
    """An id Postgres can compare (its text holds no NUL): others name nothing stored."""
    return value is None or "\x00" not in value


def _metadata_matches(cron: CronRecord, wanted: dict[str, Any] | None) -> bool:
    return not wanted or all(cron.metadata.get(k) == v for k, v in wanted.items())


class Crons:
    """Creates, reads, patches, lists and deletes crons for one tenant at a time."""

    def __init__(
        self,
        store: CronStore,
        threads: ProtocolStore,
        assistants: Assistants,
        settings: AgentProtocolSettings,
        on_scheduled: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._threads = threads
        self._assistants = assistants
        self._settings = settings
        self._on_scheduled = on_scheduled

    @property
    def store(self) -> CronStore:
        """The crons in the database (the scheduler fires through it)."""
        return self._store

    async def _checked_payload(self, run_fields: dict[str, Any], tenant: str) -> dict[str, Any]:
        """The run a cron makes, checked as a run would be; its assistant by its resolved id."""
        run = RunCreate.model_validate(run_fields)
        assistant = await self._assistants.resolve(run.assistant_id, tenant)
        self._assistants.run_payload(assistant, run)  # raises on a context the policy refuses
        return {**run_fields, "assistant_id": assistant.assistant_id}

    def _plan(self, schedule: str, timezone: str | None, end_at: float | None, now: float) -> float | None:
        """Check the schedule; the first fire after ``now`` (None when it is past the end time)."""
        zone = check_timezone(timezone)
        first = check_schedule(schedule, zone, self._settings.cron_min_interval_s, now)
        return first if end_at is None or first <= end_at else None

    async def create(self, body: ThreadCronCreate, tenant: str, thread_id: str | None = None) -> CronRecord:
        """A new cron of ``tenant`` on its thread ``thread_id``, or stateless (None).

        Raises:
            ThreadNotFoundError, AssistantNotFoundError (also another tenant's), InvalidCronError,
            InvalidContextError / InvalidAssistantError (what a run would be refused), CronLimitError.
        """
        if self._settings.cron_max_per_tenant == 0:
            raise CronLimitError("crons are off on this server (AGENTIC_CRON_MAX_PER_TENANT=0)")
        if thread_id is not None and (
            not _storable(thread_id) or await self._threads.get_thread(thread_id, tenant) is None
        ):
            raise ThreadNotFoundError(f"thread {thread_id} not found")
        now = time.time()
        end_at = epoch(body.end_time)
        if end_at is not None and end_at <= now:
            raise InvalidCronError("end_time is in the past: give a later one, or none to run for ever")
        next_run_at = self._plan(body.schedule, body.timezone, end_at, now)
        payload = await self._checked_payload(body.run_fields(), tenant)
        stamp = datetime.now(UTC).isoformat()
        record = CronRecord(
            cron_id=str(uuid.uuid4()),
            tenant=tenant,
            assistant_id=payload["assistant_id"],
            thread_id=thread_id,
            on_run_completed=(getattr(body, "on_run_completed", None) or "delete")
            if thread_id is None
            else None,
            schedule=body.schedule,
            timezone=body.timezone,
            end_at=end_at,
            payload=payload,
            metadata=body.metadata or {},
            enabled=body.enabled if body.enabled is not None else True,
            next_run_at=next_run_at,
            created_at=stamp,
            updated_at=stamp,
        )
        created = await self._store.create(record, self._settings.cron_max_per_tenant)
        self._on_scheduled()
        return created

    async def get(self, cron_id: str, tenant: str) -> CronRecord:
        """``tenant``'s cron. Raises CronNotFoundError (also for another tenant's)."""
        cron = await self._store.get(cron_id, tenant) if _storable(cron_id) else None
        if cron is None:
            raise CronNotFoundError(f"cron {cron_id} not found")
        return cron

    async def patch(self, cron_id: str, tenant: str, body: CronPatch) -> CronRecord:
        """Change what the body sets; a new schedule, zone, end or enabling re-plans the next fire.

        Raises:
            CronNotFoundError, InvalidCronError, and what :meth:`create` raises for the run.
        """
        sent = body.model_fields_set
        if not sent:
            raise InvalidCronError("nothing to change: send at least one field (schedule, enabled, ...)")
        current = await self.get(cron_id, tenant)
        if "on_run_completed" in sent and current.thread_id is not None:
            raise InvalidCronError("on_run_completed is for stateless crons; this cron runs on a thread")
        run_fields = body.run_fields()
        payload = (
            await self._checked_payload({**current.payload, **run_fields}, tenant) if run_fields else None
        )
        schedule = body.schedule or current.schedule
        timezone = body.timezone if "timezone" in sent else current.timezone
        end_at = epoch(body.end_time) if "end_time" in sent else current.end_at
        now = time.time()
        if "end_time" in sent and end_at is not None and end_at <= now:
            raise InvalidCronError("end_time is in the past: give a later one, or null to run for ever")
        replan = any(name in sent for name in _SCHEDULING)
        next_run_at = self._plan(schedule, timezone, end_at, now) if replan else None

        def change(latest: CronRecord) -> dict[str, Any]:
            values: dict[str, Any] = {"schedule": schedule, "timezone": timezone, "end_at": end_at}
            if replan:
                values["next_run_at"] = next_run_at
            if body.enabled is not None:
                values["enabled"] = body.enabled
            if body.on_run_completed is not None:
                values["on_run_completed"] = body.on_run_completed
            if body.metadata is not None:
                values["metadata"] = {**latest.metadata, **body.metadata}
            if payload is not None:
                values["payload"] = {**latest.payload, **run_fields, "assistant_id": latest.assistant_id}
            return values

        updated = await self._store.update(cron_id, tenant, change)
        if updated is None:  # deleted meanwhile
            raise CronNotFoundError(f"cron {cron_id} not found")
        self._on_scheduled()
        return updated

    async def delete(self, cron_id: str, tenant: str) -> None:
        """Delete ``tenant``'s cron; runs it already made are kept. Raises CronNotFoundError."""
        if not _storable(cron_id) or not await self._store.delete(cron_id, tenant):
            raise CronNotFoundError(f"cron {cron_id} not found")

    async def _assistant_filter(self, assistant_id: str | None, tenant: str) -> str | None:
        """An assistant id to filter by (the graph id names the default assistant)."""
        if assistant_id is not None and self._assistants.is_default(assistant_id):
            return (await self._assistants.resolve(assistant_id, tenant)).assistant_id
        return assistant_id

    async def search(self, tenant: str, body: CronSearch) -> list[CronRecord]:
        """``tenant``'s crons matching the body's filters, sorted (newest first by default), all pages."""
        if not (_storable(body.assistant_id) and _storable(body.thread_id)):
            return []
        found = await self._store.search(
            tenant,
            assistant_id=await self._assistant_filter(body.assistant_id, tenant),
            thread_id=body.thread_id,
            enabled=body.enabled,
            sort_by=body.sort_by or "created_at",
            descending=(body.sort_order or "desc") == "desc",
        )
        return [c for c in found if _metadata_matches(c, body.metadata)]

    async def count(self, tenant: str, body: CronCount) -> int:
        """How many of ``tenant``'s crons match the body's filters."""
        if not (_storable(body.assistant_id) and _storable(body.thread_id)):
            return 0
        assistant_id = await self._assistant_filter(body.assistant_id, tenant)
        if not body.metadata:
            return await self._store.count(tenant, assistant_id=assistant_id, thread_id=body.thread_id)
        found = await self._store.search(tenant, assistant_id=assistant_id, thread_id=body.thread_id)
        return sum(1 for c in found if _metadata_matches(c, body.metadata))
