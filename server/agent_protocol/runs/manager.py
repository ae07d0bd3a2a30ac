"""The run manager: the one thing the routes call to create, follow, cancel and await runs.

Runs and their status live in the database, and so does the queue: a created run is stored
``pending`` with no owner and every server process sharing the database claims runs from it
(:mod:`~server.agent_protocol.runs.worker`, :mod:`~server.agent_protocol.storage.queue`). The
process that accepted a run claims it at once when it has a free slot (the same claim, so the
thread's order and the limit hold); otherwise it waits for any process's worker.

Runs of one thread execute one at a time in creation order, wherever they execute (a run is
claimable only when no older run of its thread is active): that is ``multitask_strategy="enqueue"``;
``reject`` answers 409 while a run is active; ``interrupt`` / ``rollback`` cancel the active runs
first (``rollback`` also deletes them). A client of any process can stream, join, wait on or
cancel a run executing on another: events come through the event table
(:mod:`~server.agent_protocol.streaming.hubs`), cancels through a ``cancel_action`` on the run row.

The manager builds the parts in dependency order (store, queue, event log, hubs, executor, worker,
listener) and owns none of a run's state itself: the worker does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from server.agent_protocol.assistants import Assistants
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.errors import (
    AgentProtocolError,
    InvalidRunError,
    RunConflictError,
    RunNotFoundError,
    ThreadExistsError,
    ThreadNotFoundError,
)
from server.agent_protocol.graphs import GraphHost
from server.agent_protocol.runs.executor import RunExecutor
from server.agent_protocol.runs.worker import RunWorker
from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.serde import dumpb, dumps_to_obj
from server.agent_protocol.status import ACTIVE_STATUSES, CancelAction, RunStatus
from server.agent_protocol.storage.events import EventLog
from server.agent_protocol.storage.notify import CANCEL_CHANNEL, EVENTS_CHANNEL, QUEUE_CHANNEL, PgListener
from server.agent_protocol.storage.queue import RunQueue
from server.agent_protocol.storage.records import RunEvent, RunRecord, ThreadRecord
from server.agent_protocol.storage.store import ProtocolStore
from server.agent_protocol.streaming.hubs import StreamHubs
from server.agent_protocol.streaming.streams import Subscription

__all__ = ["RunManager"]


class RunManager:
    """Creates, follows, cancels and awaits runs; owns this process's worker and stream hubs."""

    def __init__(
        self,
        store: ProtocolStore,
        host: GraphHost,
        settings: AgentProtocolSettings,
        context_extras: dict[str, Any] | None = None,
        *,
        assistants: Assistants,
        database_url: str | None = None,
    ) -> None:
        self._store = store
        self._host = host
        self._assistants = assistants
        self._settings = settings
        queue = RunQueue(store)
        self._queue = queue
        self._events = EventLog(store, flush_s=settings.event_flush_s)
        self._hubs = StreamHubs(
            store,
            self._events,
            queue_size=settings.subscriber_queue_size,
            replay_size=settings.replay_buffer_size,
            tail_poll_s=settings.tail_poll_s,
            linger_s=settings.finished_run_linger_s,
        )
        self._events.on_flushed(self._hubs.wake)
        persisted = self._events if settings.persist_events else None
        executor = RunExecutor(
            store=store,
            queue=queue,
            host=host,
            settings=settings,
            events=persisted,
            hubs=self._hubs,
            context_extras=context_extras,
        )
        self._worker = RunWorker(
            store=store, queue=queue, host=host, settings=settings, events=persisted, executor=executor
        )
        self._listener = (
            PgListener(
                database_url,
                {
                    QUEUE_CHANNEL: self._worker.wake,
                    CANCEL_CHANNEL: self._worker.on_cancel_notice,
                    EVENTS_CHANNEL: lambda run_id: self._hubs.wake([run_id]),
                },
            )
            if store.is_postgres and database_url
            else None
        )
        self._admit_locks: dict[str, asyncio.Lock] = {}

    @property
    def worker_id(self) -> str:
        """This process's id in the queue (the ``worker_id`` of the runs it claims)."""
        return self._worker.worker_id

    def start(self) -> None:
        """Start the event writer, the Postgres listener and the worker loops."""
        self._events.start()
        if self._listener is not None:
            self._listener.start()
        self._worker.start()

    # threads (as runs see them) ------------------------------------------------------------------

    def thread_metadata(
        self, metadata: dict[str, Any] | None = None, assistant_id: str | None = None
    ) -> dict[str, Any]:
        """A new thread's metadata: the served graph and assistant (clients search by either)."""
        assistant = assistant_id or self._host.assistant_id
        return {"graph_id": self._host.graph_id, "assistant_id": assistant, **(metadata or {})}

    async def delete_thread(self, thread_id: str) -> None:
        """Cancel the thread's runs, then delete it, its runs and its checkpoints."""
        await self.cancel_thread_runs(thread_id)
        await self._store.delete_thread(thread_id)
        checkpointer = self._host.graph.checkpointer
        if isinstance(checkpointer, BaseCheckpointSaver):
            await checkpointer.adelete_thread(thread_id)

    async def threads_of_assistant(self, assistant_id: str, tenant: str) -> list[str]:
        """Ids of ``tenant``'s threads whose ``metadata.assistant_id`` is ``assistant_id``."""
        found = await self._store.search_threads(
            metadata={"assistant_id": assistant_id},
            status=None,
            ids=None,
            limit=1_000_000,
            offset=0,
            sort_by="created_at",
            sort_order="asc",
            tenant=tenant,
        )
        return [t.thread_id for t in found]

    async def require_thread(self, thread_id: str, tenant: str) -> ThreadRecord:
        """The thread if ``tenant`` owns it. Raises ThreadNotFoundError (also for another tenant's)."""
        thread = await self._store.get_thread(thread_id, tenant)
        if thread is None:
            raise ThreadNotFoundError(f"thread {thread_id} not found")
        return thread

    # creation ------------------------------------------------------------------------------------

    async def create_stateless_run(
        self, payload: RunCreate, *, tenant: str = "default", subscribe: bool = False
    ) -> tuple[RunRecord, Subscription | None]:
        """A run on a thread made for it, deleted when the run ends (``on_completion="delete"``,
        the default) or kept (``"keep"``); it goes through the same queue as any run.

        Raises:
            AssistantNotFoundError, InvalidRunError (also a command: there is nothing to resume).
        """
        if payload.command is not None:
            raise InvalidRunError("a stateless run has no thread to resume: send input, not a command")
        stateless = payload.model_copy(
            update={
                "on_completion": payload.on_completion or "delete",
                "if_not_exists": "create",
                "checkpoint": None,
                "checkpoint_id": None,
            }
        )
        return await self._create(str(uuid.uuid4()), stateless, tenant=tenant, subscribe=subscribe)

    async def create_stateless_batch(self, payloads: list[RunCreate], *, tenant: str) -> list[RunRecord]:
        """Stateless background runs, all checked before any is created (one bad run: none queued).

        Raises:
            AssistantNotFoundError, InvalidRunError (naming the run's position in the batch).
        """
        for position, payload in enumerate(payloads):
            try:
                if payload.command is not None:
                    raise InvalidRunError(
                        "a stateless run has no thread to resume: send input, not a command"
                    )
                assistant = await self._assistants.resolve(payload.assistant_id, tenant)
                self._assistants.run_payload(assistant, payload)
            except AgentProtocolError as exc:
                raise type(exc)(f"run {position} of the batch: {exc}") from None
        return [(await self.create_stateless_run(p, tenant=tenant))[0] for p in payloads]

    async def create_run(
        self, thread_id: str, payload: RunCreate, *, tenant: str = "default", subscribe: bool = False
    ) -> tuple[RunRecord, Subscription | None]:
        """Admit a run (multitask strategy), queue it, claim it here if a slot is free.

        Args:
            thread_id: The thread.
            payload: The request (``on_completion`` is for stateless runs only: ignored).
            tenant: Who asks.
            subscribe: Also return a subscription to all the run's events, wherever it executes.

        Raises:
            ThreadNotFoundError (also for another tenant's thread), ThreadExistsError (creating a
            thread whose id another tenant uses), AssistantNotFoundError (also another tenant's),
            RunConflictError, InvalidRunError (a context the operator's policy refuses included).
        """
        payload = payload.model_copy(update={"on_completion": None})
        return await self._create(thread_id, payload, tenant=tenant, subscribe=subscribe)

    async def _create(
        self, thread_id: str, payload: RunCreate, *, tenant: str, subscribe: bool
    ) -> tuple[RunRecord, Subscription | None]:
        assistant = await self._assistants.resolve(payload.assistant_id, tenant)
        # A bad context is a 422 now, not a failed run later; the stored request carries the
        # assistant's config and context under the run's, so a resumed run executes the same.
        payload = self._assistants.run_payload(assistant, payload)
        if payload.command is not None and payload.input is not None:
            raise InvalidRunError("give either input or command, not both")
        lock = self._admit_locks.setdefault(thread_id, asyncio.Lock())
        async with lock:
            thread, active = await self._store.thread_with_active_runs(thread_id, tenant)
            if thread is None:
                if payload.if_not_exists != "create":
                    raise ThreadNotFoundError(f"thread {thread_id} not found")
                if await self._store.get_thread(thread_id) is not None:
                    raise ThreadExistsError(f"thread id {thread_id} is taken; choose another")
                metadata = self.thread_metadata(assistant_id=assistant.assistant_id)
                await self._store.create_thread(thread_id, metadata, tenant)
            if active:
                if payload.multitask_strategy == "reject":
                    raise RunConflictError(
                        f"thread {thread_id} is busy with run {active[0].run_id}; "
                        "use multitask_strategy 'enqueue' to queue this run"
                    )
                if payload.multitask_strategy in ("interrupt", "rollback"):
                    action = CancelAction(payload.multitask_strategy)
                    for other in active:
                        await self._worker.cancel(other.run_id, action, wait=True)
            record = await self._store.create_run(
                run_id=str(uuid.uuid4()),
                thread_id=thread_id,
                assistant_id=assistant.assistant_id,
                metadata=payload.metadata or {},
                multitask_strategy=payload.multitask_strategy,
                kwargs=dumps_to_obj(payload.model_dump(exclude_none=True)),
                tenant=tenant,
            )
        sub = self._hubs.open(record.run_id) if subscribe else None
        if not await self._worker.claim(record.run_id):  # busy here, or its thread is
            if sub is not None and self._worker.active(record.run_id) is None:
                self._hubs.follow(record.run_id)
            self._worker.announce()
        return record, sub

    # following -----------------------------------------------------------------------------------

    async def queued_event(self, run_id: str) -> RunEvent | None:
        """The event a new stream opens with while its run waits in the queue; None once it started.

        A ``metadata`` event, as the LangGraph server's streams open with, carrying the run id, its
        status (``pending``) and ``queue_position`` (pending runs ahead of it, all processes): a
        client learns the run id and can show progress or cancel at once, instead of hearing
        nothing until a slot frees. Clients read ``run_id`` and ignore the other keys; when the run
        starts, the usual ``metadata`` event (run id and attempt) follows.
        """
        if self._worker.active(run_id) is not None:
            return None  # claimed here: its own metadata event is on its way
        position = await self._queue.position(run_id)
        if position is None:
            return None  # started (elsewhere) or ended meanwhile
        data = {"run_id": run_id, "status": RunStatus.PENDING, "queue_position": position}
        return RunEvent(0, "metadata", dumpb(data))

    async def subscribe(
        self, run_id: str, *, modes: Collection[str] | None = None, last_event_id: str | None = None
    ) -> Subscription:
        """New events of a run (after ``last_event_id`` first, when given), wherever it executes."""
        return await self._hubs.subscribe(run_id, modes=modes, last_event_id=last_event_id)

    async def get_run(self, thread_id: str, run_id: str, *, tenant: str | None = None) -> RunRecord:
        """The stored run (of a thread ``tenant`` owns, when given).

        Raises:
            ThreadNotFoundError, RunNotFoundError.
        """
        if tenant is not None:
            thread, record = await self._store.get_owned_run(run_id, thread_id, tenant)
            if thread is None:
                raise ThreadNotFoundError(f"thread {thread_id} not found")
        else:
            record = await self._store.get_run(run_id, thread_id)
        if record is None:
            raise RunNotFoundError(f"run {run_id} not found on thread {thread_id}")
        return record

    async def list_runs(
        self, thread_id: str, *, tenant: str, limit: int, offset: int, status: str | None = None
    ) -> list[RunRecord]:
        """Runs of a thread ``tenant`` owns, newest first. Raises ThreadNotFoundError."""
        await self.require_thread(thread_id, tenant)
        return await self._store.list_runs(thread_id, limit=limit, offset=offset, status=status)

    async def wait(self, thread_id: str, run_id: str, poll_s: float = 0.2) -> Any:
        """Wait for a run to end; return its result (final values, ``__interrupt__`` / ``__error__``)."""
        while True:
            run = self._worker.active(run_id)
            if run is not None:
                await run.done.wait()
                return run.result
            record = await self.get_run(thread_id, run_id)
            if record.status not in ACTIVE_STATUSES:
                break
            await asyncio.sleep(poll_s)  # pending, or executing on another process
        thread = await self._store.get_thread(thread_id)
        if record.error:
            return {"__error__": {"error": record.error.split(":", 1)[0], "message": record.error}}
        if thread is None:  # a stateless run's thread, deleted as it ended: its result is on the run
            return record.result
        values = thread.values if thread else None
        if thread is not None and thread.interrupts and isinstance(values, dict):
            values = {**values, "__interrupt__": [i for items in thread.interrupts.values() for i in items]}
        return values

    # cancelling ----------------------------------------------------------------------------------

    async def cancel(
        self, run_id: str, *, action: CancelAction = CancelAction.INTERRUPT, wait: bool = False
    ) -> bool:
        """Cancel a pending or running run wherever it executes; True when it was active."""
        return await self._worker.cancel(run_id, action, wait=wait)

    def on_disconnect(self, run_id: str, *, cancel: bool, who: str) -> Callable[[], None] | None:
        """What a response calls when its client leaves before the end: cancel the run, or nothing."""
        if not cancel:
            return None
        return lambda: self._worker.cancel_soon(run_id, f"{who} disconnected")

    async def delete_run(self, thread_id: str, run_id: str, *, tenant: str) -> None:
        """Delete a run (an active one is cancelled first). Raises ThreadNotFoundError, RunNotFoundError."""
        await self.get_run(thread_id, run_id, tenant=tenant)
        await self._worker.cancel(run_id, CancelAction.INTERRUPT, wait=True)
        await self._store.delete_run(run_id, thread_id)

    async def cancel_assistant_runs(self, assistant_id: str, tenant: str) -> None:
        """Cancel every active run of ``tenant`` that uses the assistant (before deleting it)."""
        for run_id in await self._assistants.store.active_run_ids(assistant_id, tenant):
            await self._worker.cancel(run_id, CancelAction.INTERRUPT, wait=True)

    async def cancel_thread_runs(self, thread_id: str) -> None:
        """Cancel every active run of a thread (before deleting it)."""
        for record in await self._store.active_runs(thread_id):
            await self._worker.cancel(record.run_id, CancelAction.INTERRUPT, wait=True)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the worker, hand back the runs executing here, stop streaming; idempotent."""
        await self._worker.close(timeout)
        await self._events.close()
        await self._hubs.close()
        if self._listener is not None:
            await self._listener.close()
