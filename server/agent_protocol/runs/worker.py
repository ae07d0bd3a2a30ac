"""The worker of one server process: the registry of the runs it executes, their claims, leases and cancels.

It is the one owner of a run's life in this process: it claims runs from the database queue, starts
each in its own task (:class:`~server.agent_protocol.runs.executor.RunExecutor` drives the graph),
keeps their leases, applies cancel requests (made here or through another process) and hands its
runs back to the queue when the process shuts down.

It claims pending runs oldest first while fewer than ``max_concurrent_runs`` execute here, woken
by this process's own new runs and freed slots, by ``NOTIFY`` on Postgres, and every
``queue_poll_s`` otherwise. The same claim takes over runs whose lease ran out (their process
died: ``kill -9``, a crash, a lost node) and *resumes them from their last checkpoint*: the graph
is invoked again with no input, so the steps already checkpointed are not repeated. A run with no
checkpoint of its own yet starts from its input; a run that already started ``run_max_attempts``
times is marked ``error`` with the reason (a run that crashes the server must not crash it forever).

Leases of the runs executing here are renewed every third of ``run_lease_s``; cancel requests
made through other processes are picked up by ``NOTIFY`` or every ``cancel_poll_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from pydantic import ValidationError

from server import logs
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.graphs import GraphHost
from server.agent_protocol.runs.executor import ActiveRun, RunExecutor
from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.status import ACTIVE_STATUSES, CancelAction, Handover, RunStatus, ThreadStatus
from server.agent_protocol.storage.events import EventLog
from server.agent_protocol.storage.queue import RunQueue
from server.agent_protocol.storage.records import RunRecord
from server.agent_protocol.storage.store import ProtocolStore
from server.heap import freeze_warm_heap
from server.metrics import RECOVERED_RUNS, RUN_QUEUE_DEPTH, RUNS

__all__ = ["RunWorker"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class RunWorker:
    """Claims, starts and cancels runs; keeps their leases; the registry of the runs claimed here."""

    def __init__(
        self,
        *,
        store: ProtocolStore,
        queue: RunQueue,
        host: GraphHost,
        settings: AgentProtocolSettings,
        events: EventLog | None,
        executor: RunExecutor,
    ) -> None:
        self._store = store
        self._queue = queue
        self._host = host
        self._settings = settings
        self._events = events
        self._executor = executor
        self.worker_id = uuid.uuid4().hex
        self._runs: dict[str, ActiveRun] = {}  # claimed here, kept a while after they end (for wait)
        self._executing: set[str] = set()
        self._claim_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._announcer: asyncio.Task[None] | None = None
        self._announce_wanted = False
        self._closing = False

    def start(self) -> None:
        """Start the claim, lease and cancel loops (the first claim at once)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._claim_loop(), name="run-queue-worker"),
                asyncio.create_task(self._lease_loop(), name="run-leases"),
                asyncio.create_task(self._cancel_loop(), name="run-cancel-requests"),
            ]

    def wake(self, _payload: str = "") -> None:
        """Look at the queue now (a run was queued or a slot freed)."""
        self._wakeup.set()

    def announce(self) -> None:
        """Tell every process to look at the queue (a run waits here, or a slot freed).

        Calls made while an announcement is on its way fold into one more after it: under load
        every run's end announces, and one ``NOTIFY`` says it for all of them (each is a
        transaction on Postgres; SQLite processes poll and send nothing).
        """
        self._announce_wanted = True
        if self._announcer is None or self._announcer.done():
            self._announcer = self._spawn(self._announce_all(), name="run-queue-announcer")

    async def _announce_all(self) -> None:
        while self._announce_wanted:
            self._announce_wanted = False
            await self._queue.announce()

    def _spawn(self, coro: Coroutine[Any, Any, _T], *, name: str) -> asyncio.Task[_T]:
        """Run ``coro`` in the background (cancelled on close; a failure is logged, not lost)."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    def active(self, run_id: str) -> ActiveRun | None:
        """The run if this process claimed it (executing, or ended within ``finished_run_linger_s``)."""
        return self._runs.get(run_id)

    @property
    def free_slots(self) -> int:
        """How many more runs this process may execute now."""
        return self._settings.max_concurrent_runs - len(self._executing)

    # claiming ------------------------------------------------------------------------------------

    async def claim(self, run_id: str | None = None) -> list[ActiveRun]:
        """Claim and start runs up to the free slots (only ``run_id`` when given).

        Returns:
            The runs started here.
        """
        if self._closing:
            return []
        async with self._claim_lock:  # one claim at a time, so the slots are counted right
            if self.free_slots <= 0:
                return []
            now = time.time()
            claimed = await self._queue.claim(
                self.worker_id, now, now + self._settings.run_lease_s, self.free_slots, run_id
            )
            started = []
            for record in claimed:
                with logs.bound(tenant=record.tenant, thread_id=record.thread_id, run_id=record.run_id):
                    run = await self._prepare(record)
                if run is not None:
                    started.append(run)
            return started

    async def _prepare(self, record: RunRecord) -> ActiveRun | None:
        """Start a claimed run, deciding how when it was orphaned by a dead process."""
        mine = self._runs.get(record.run_id)
        if mine is not None and not mine.done.is_set():
            return None  # ours: this loop stalled past the lease, nothing died
        try:
            payload = RunCreate.model_validate(record.kwargs)
        except ValidationError as exc:
            await self._fail(record, f"cannot start: stored request is invalid: {exc}")
            return None
        # A running run with no owner was handed back by a process that shut down gracefully.
        handed_back = record.worker_id is None and record.status == RunStatus.RUNNING
        orphaned = handed_back or (record.worker_id is not None and record.worker_id != self.worker_id)
        if orphaned and record.cancel_action is None:
            action = "started"  # claimed by a process that died before starting it
            if record.status == RunStatus.RUNNING:
                if record.attempts >= self._settings.run_max_attempts:
                    await self._fail(
                        record,
                        f"the server stopped during this run {record.attempts} time(s); not resumed again "
                        f"(AGENTIC_RUN_MAX_ATTEMPTS={self._settings.run_max_attempts})",
                    )
                    return None
                config = {"configurable": {"thread_id": record.thread_id}}
                snapshot = await self._host.graph.aget_state(config)  # type: ignore[arg-type]
                if (snapshot.metadata or {}).get("run_id") == record.run_id:
                    action = "resumed"  # continue from the run's own last checkpoint
                    payload = payload.model_copy(
                        update={"input": None, "command": None, "checkpoint": None, "checkpoint_id": None}
                    )
                else:
                    action = "restarted"  # it died before its first checkpoint: nothing to resume from
            RECOVERED_RUNS.labels(action=action).inc()
            how = "shut down" if handed_back else "stopped"
            logger.warning(
                "run %s of a %s server process %s (attempt %d)",
                record.run_id,
                how,
                action,
                record.attempts + 1,
            )
        return self._start(record, payload, cancel_action=record.cancel_action)

    def _start(
        self, record: RunRecord, payload: RunCreate, *, cancel_action: CancelAction | None = None
    ) -> ActiveRun:
        """Register a run claimed by this process and start its task."""
        resuming = record.attempts > 0 or record.status == RunStatus.RUNNING  # earlier events are stored
        run = ActiveRun(record=record, payload=payload, resuming=resuming)
        run.cancel_action = cancel_action
        self._runs[record.run_id] = run
        self._executing.add(record.run_id)
        run.task = asyncio.create_task(self._execute(run), name=f"run-{record.run_id}")
        run.task.add_done_callback(lambda _task: self._never_ran(run))
        return run

    def _never_ran(self, run: ActiveRun) -> None:
        """A run's task ended without running its body (cancelled before its first step): free its slot.

        :meth:`ActiveRun.stop` keeps this from happening; this is the net under it, so such a bug
        costs one run (its lease runs out and the queue recovers it) and not every run after it.
        """
        if run.entered:  # it ran: its own `finally` recorded the end and freed the slot
            return
        logger.error("run %s: its task ended before it began; freeing its slot", run.record.run_id)
        self._executor.abandon(run)
        self._finished(run)

    async def _execute(self, run: ActiveRun) -> None:
        try:
            await self._executor.execute(run)
        finally:
            self._finished(run)

    def _finished(self, run: ActiveRun) -> None:
        """A run ended here: free its slot, look at the queue, keep it a while for ``wait``."""
        run_id = run.record.run_id
        self._executing.discard(run_id)
        freeze_warm_heap()  # the first run built what later runs reuse: out of full GC passes
        self.wake()
        if not self._closing:
            self.announce()
        asyncio.get_running_loop().call_later(self._settings.finished_run_linger_s, self._forget, run)

    def _forget(self, run: ActiveRun) -> None:
        if self._runs.get(run.record.run_id) is run:
            del self._runs[run.record.run_id]

    async def _fail(self, record: RunRecord, reason: str) -> None:
        RECOVERED_RUNS.labels(action="failed").inc()
        RUNS.labels(status="error").inc()
        logger.error("run %s marked failed: %s", record.run_id, reason)
        await self._store.set_run_status(record.run_id, RunStatus.ERROR, reason)
        if await self._store.get_thread(record.thread_id) is not None:
            await self._store.update_thread(record.thread_id, status=ThreadStatus.ERROR)

    # loops ---------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        gauge_at = 0.0
        while True:
            self._wakeup.clear()
            try:
                await self.claim()
                if time.monotonic() - gauge_at >= min(1.0, self._settings.queue_poll_s):
                    gauge_at = time.monotonic()
                    RUN_QUEUE_DEPTH.set(await self._queue.pending_count())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("claiming runs failed; retrying")
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._settings.queue_poll_s)
            except TimeoutError:
                pass

    async def _lease_loop(self) -> None:
        interval = self._settings.run_lease_s / 3
        while True:
            try:
                executing = list(self._executing)
                kept = await self._queue.renew_leases(
                    self.worker_id, executing, time.time() + self._settings.run_lease_s
                )
                for run_id in set(executing) - kept:
                    self._drop_lost(run_id)
                if self._events is not None:
                    await self._events.delete_expired(self._settings.run_events_retention_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("renewing leases failed; retrying")
            await asyncio.sleep(interval)

    def _drop_lost(self, run_id: str) -> None:
        """Stop a run whose lease another process took over (this one stalled past it)."""
        run = self._runs.get(run_id)
        if run is None or run.done.is_set() or run.task is None:
            return  # ended meanwhile
        logger.warning("run %s: lease lost to another process; stopping this copy", run_id)
        run.stop(handover=Handover.LOST)

    async def _cancel_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.cancel_poll_s)
            if not self._executing:
                continue
            try:
                for run_id, action in await self._queue.cancel_requests(self.worker_id):
                    self._cancel_local(run_id, action)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading cancel requests failed; retrying")

    def on_cancel_notice(self, run_id: str) -> None:
        """``NOTIFY`` of a cancel request: apply it if the run executes here."""
        if run_id in self._executing:
            task = asyncio.create_task(self._apply_cancel_request(run_id), name=f"cancel-{run_id}")
            task.add_done_callback(_log_failure)

    async def _apply_cancel_request(self, run_id: str) -> None:
        action = await self._queue.cancel_action(run_id)
        if action is not None:
            self._cancel_local(run_id, action)

    # cancelling ----------------------------------------------------------------------------------

    async def cancel(self, run_id: str, action: CancelAction, *, wait: bool = False) -> bool:
        """Cancel a pending or running run wherever it executes; True when it was active.

        Executing here: its task is cancelled. Claimed by nobody (queued, or its process died): it
        is claimed here just to end it as cancelled. Executing elsewhere: the request is written on
        its row, and its owner applies it (``NOTIFY`` or its poll).
        """
        run = self._runs.get(run_id)
        if run is not None and self._cancel_local(run_id, action):
            if wait:
                await run.done.wait()
            return True
        now = time.time()
        record = await self._queue.claim_to_cancel(
            run_id, self.worker_id, now, now + self._settings.run_lease_s, action
        )
        if record is not None:  # nobody executes it: end it here
            payload = RunCreate.model_validate(record.kwargs)
            run = self._start(record, payload, cancel_action=action)
            if wait:
                await run.done.wait()
            return True
        if not await self._queue.request_cancel(run_id, action):
            return False  # already ended
        if wait:
            await self._until_ended(run_id)
        return True

    async def _until_ended(self, run_id: str, poll_s: float = 0.05) -> None:
        deadline = time.monotonic() + self._settings.run_lease_s + 10
        while time.monotonic() < deadline:
            record = await self._store.get_run(run_id)
            if record is None or record.status not in ACTIVE_STATUSES:
                return
            await asyncio.sleep(poll_s)
        logger.warning("run %s: cancel requested but it has not ended yet", run_id)

    def cancel_soon(self, run_id: str, reason: str) -> None:
        """Cancel without waiting (from the ``finally`` of a response whose client went away)."""
        logger.info("run %s: cancelling (%s)", run_id, reason)
        if not self._cancel_local(run_id, CancelAction.INTERRUPT):
            self._spawn(self.cancel(run_id, CancelAction.INTERRUPT), name=f"cancel-{run_id}")

    def _cancel_local(self, run_id: str, action: CancelAction) -> bool:
        """Cancel a run executing here; False when it does not."""
        run = self._runs.get(run_id)
        if run is None or run.done.is_set() or run.task is None:
            return False
        run.stop(cancel=action)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Stop claiming; hand the runs executing here back to the queue; idempotent.

        Why hand back rather than mark them interrupted: a restart or a rolling deploy must not end
        users' runs. Each stops at its next await and goes back to the queue with its status, and
        the next process to claim it (another one now, or this one after a restart) resumes it
        from its last checkpoint. Runs already being cancelled end as ``interrupted``.
        """
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        handed: list[str] = []
        tasks: list[asyncio.Task[None]] = []
        for run in self._runs.values():
            if run.task is None or run.task.done():
                continue
            if not run.stopping and not run.finishing:
                run.stop(handover=Handover.HANDOFF)
                handed.append(run.record.run_id)
            tasks.append(run.task)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for run_id in handed:
            try:
                if await self._queue.hand_back(run_id, self.worker_id):
                    logger.warning("run %s handed back to the queue (server shutting down)", run_id)
            except Exception:  # the lease runs out instead: recovered like a crash
                logger.exception("run %s: handing it back failed", run_id)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("%s failed: %s", task.get_name(), task.exception())
