"""The run manager: every run executes the graph in its own asyncio task.

Why a task of its own: an SSE response that iterates ``graph.astream`` directly keeps running
after the client has gone, so a disconnect or a cancel could not stop the graph. Here the HTTP
handlers only read a :class:`~server.agent_protocol.streams.RunStream`; cancelling means
``task.cancel()``, which stops the graph at its next await (well under a second).

Runs of one thread execute one at a time, in creation order (a FIFO lock per thread), which is
what ``multitask_strategy="enqueue"`` needs; ``reject`` answers 409 while a run is active,
``interrupt`` / ``rollback`` cancel the active runs first (``rollback`` also deletes them).
Statuses are written to the database before a stream closes, so a client that sees the stream
end and asks for the run always finds it finished.

Restart safety: each run is leased to this process (``worker_id``) and the lease is renewed every
third of ``run_lease_s``. A run whose lease ran out belongs to a process that died (``kill -9``, a
crash, a lost node); :meth:`RunManager.recover` (at start-up, then periodically) takes it over and
*resumes it from its last checkpoint*: the graph is invoked again with no input, so the steps
already checkpointed are not repeated, and the messages and file versions they produced stay as
they are. A run with no checkpoint of its own yet starts from its input; a run that has already
started ``run_max_attempts`` times is marked ``error`` with the reason instead (a run that crashes
the server must not crash it forever).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from pydantic import ValidationError

from server import logs
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.errors import (
    AssistantNotFoundError,
    InvalidRunError,
    RunConflictError,
    RunNotFoundError,
    ThreadExistsError,
    ThreadNotFoundError,
)
from server.agent_protocol.graphs import GraphHost, interrupts_by_task
from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.serde import dumps_to_obj
from server.agent_protocol.storage import ACTIVE_STATUSES, ProtocolStore, RunRecord
from server.agent_protocol.streams import RunStream, Subscription
from server.metrics import RECOVERED_RUNS, RUN_DURATION, RUN_QUEUE_DEPTH, RUNS
from server.tenancy import TenantStore

__all__ = ["ActiveRun", "RunManager"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ActiveRun:
    """A run this process is executing or about to execute."""

    record: RunRecord
    stream: RunStream
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    cancel_action: str | None = None
    status: str = "pending"
    result: Any = None
    queued: bool = True  # counted in the queue-depth gauge until it starts or ends
    started: float | None = None  # monotonic time execution began


def _graph_modes(requested: list[str]) -> list[str]:
    """LangGraph's modes for the requested protocol modes (``messages-tuple`` is ``messages``)."""
    modes = {"messages" if m in ("messages", "messages-tuple") else m for m in requested}
    modes.discard("events")
    return sorted(modes or {"values"})


class RunManager:
    """Creates, executes, cancels and awaits runs; owns the per-run streams of this process."""

    def __init__(
        self,
        store: ProtocolStore,
        host: GraphHost,
        settings: AgentProtocolSettings,
        context_extras: dict[str, Any] | None = None,
    ) -> None:
        self._store = store
        self._context_extras = {k: v for k, v in (context_extras or {}).items() if v is not None}
        self._host = host
        self._settings = settings
        self._runs: dict[str, ActiveRun] = {}
        self._exec_locks: dict[str, asyncio.Lock] = {}
        self._admit_locks: dict[str, asyncio.Lock] = {}
        self._closing = False
        self.worker_id = uuid.uuid4().hex
        self._maintenance: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start renewing this process's leases and recovering orphaned runs (first pass at once)."""
        if self._maintenance is None:
            self._maintenance = asyncio.create_task(self._maintain(), name="run-maintenance")

    # creation ------------------------------------------------------------------------------------

    async def create_run(
        self, thread_id: str, payload: RunCreate, *, tenant: str = "default", subscribe: bool = False
    ) -> tuple[ActiveRun, Subscription | None]:
        """Admit a run (multitask strategy), record it, start its task; optionally subscribe first.

        Raises:
            ThreadNotFoundError (also for another tenant's thread), ThreadExistsError (creating a
            thread whose id another tenant uses), AssistantNotFoundError, RunConflictError,
            InvalidRunError.
        """
        if not self._host.matches(payload.assistant_id):
            raise AssistantNotFoundError(f"assistant {payload.assistant_id!r} not found")
        if payload.command is not None and payload.input is not None:
            raise InvalidRunError("give either input or command, not both")
        lock = self._admit_locks.setdefault(thread_id, asyncio.Lock())
        async with lock:
            thread = await self._store.get_thread(thread_id, tenant)
            if thread is None:
                if payload.if_not_exists != "create":
                    raise ThreadNotFoundError(f"thread {thread_id} not found")
                if await self._store.get_thread(thread_id) is not None:
                    raise ThreadExistsError(f"thread id {thread_id} is taken; choose another")
                await self._store.create_thread(thread_id, {"graph_id": self._host.graph_id}, tenant)
            active = await self._store.active_runs(thread_id)
            if active:
                if payload.multitask_strategy == "reject":
                    raise RunConflictError(
                        f"thread {thread_id} is busy with run {active[0].run_id}; "
                        "use multitask_strategy 'enqueue' to queue this run"
                    )
                if payload.multitask_strategy in ("interrupt", "rollback"):
                    for other in active:
                        await self.cancel(other.run_id, action=payload.multitask_strategy, wait=True)
            record = await self._store.create_run(
                run_id=str(uuid.uuid4()),
                thread_id=thread_id,
                assistant_id=self._host.assistant_id,
                metadata=payload.metadata or {},
                multitask_strategy=payload.multitask_strategy,
                kwargs=dumps_to_obj(payload.model_dump(exclude_none=True)),
                tenant=tenant,
                worker_id=self.worker_id,
                lease_until=time.time() + self._settings.run_lease_s,
            )
            return self._schedule(record, payload, subscribe=subscribe)

    def _schedule(
        self, record: RunRecord, payload: RunCreate, *, subscribe: bool = False
    ) -> tuple[ActiveRun, Subscription | None]:
        """Register the run and start its task (runs of a thread execute in the order scheduled)."""
        run = ActiveRun(
            record=record,
            stream=RunStream(
                record.run_id,
                queue_size=self._settings.subscriber_queue_size,
                replay_size=self._settings.replay_buffer_size,
            ),
        )
        self._runs[record.run_id] = run
        RUN_QUEUE_DEPTH.inc()
        sub = run.stream.subscribe() if subscribe else None
        # Taken in admission order, so runs of a thread execute in the order they were created.
        exec_lock = self._exec_locks.setdefault(record.thread_id, asyncio.Lock())
        run.task = asyncio.create_task(self._execute(run, payload, exec_lock), name=f"run-{record.run_id}")
        return run, sub

    def _dequeue(self, run: ActiveRun) -> None:
        if run.queued:
            run.queued = False
            RUN_QUEUE_DEPTH.dec()

    # execution -----------------------------------------------------------------------------------

    async def _execute(self, run: ActiveRun, payload: RunCreate, exec_lock: asyncio.Lock) -> None:
        rec = run.record
        logs.bind(tenant=rec.tenant, thread_id=rec.thread_id, run_id=rec.run_id)
        status, error = "interrupted", None
        try:
            async with exec_lock:
                if run.cancel_action is None:
                    self._dequeue(run)
                    run.status = "running"
                    run.started = time.monotonic()
                    attempt = await self._store.start_attempt(rec.run_id)
                    await self._store.update_thread(rec.thread_id, status="busy")
                    run.stream.publish("metadata", {"run_id": rec.run_id, "attempt": attempt})
                    try:
                        await self._drive(run, payload)
                        status = "success"
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        logger.warning("run %s failed: %s: %s", rec.run_id, type(exc).__name__, exc)
                        status, error = "error", f"{type(exc).__name__}: {exc}"
                        run.stream.publish("error", {"error": type(exc).__name__, "message": str(exc)})
                    await self._finish(run, status, error)
                    return
        except asyncio.CancelledError:
            logger.info("run %s cancelled (%s)", rec.run_id, run.cancel_action or "shutdown")
        await self._finish(run, "interrupted", None)

    def _config(self, run: ActiveRun, payload: RunCreate) -> RunnableConfig:
        config: dict[str, Any] = dict(payload.config or {})
        configurable = dict(config.get("configurable") or {})
        configurable["thread_id"] = run.record.thread_id
        checkpoint_id = payload.checkpoint_id or (
            payload.checkpoint.checkpoint_id if payload.checkpoint else None
        )
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
            configurable["checkpoint_ns"] = payload.checkpoint.checkpoint_ns if payload.checkpoint else ""
        config["configurable"] = configurable
        config["run_id"] = uuid.UUID(run.record.run_id)
        config["metadata"] = {
            **(config.get("metadata") or {}),
            **(payload.metadata or {}),
            "run_id": run.record.run_id,
            "thread_id": run.record.thread_id,
        }
        config.setdefault("recursion_limit", 100)
        return config  # type: ignore[return-value]

    async def _drive(self, run: ActiveRun, payload: RunCreate) -> None:
        """Stream the graph into the run's stream; event names and shapes follow the LangGraph server."""
        requested = payload.modes()
        graph_input: Any = payload.input
        if payload.command is not None:
            cmd = payload.command
            graph_input = Command(resume=cmd.resume, update=cmd.update, goto=cmd.goto or ())
        kwargs: dict[str, Any] = {}
        if payload.interrupt_before:
            kwargs["interrupt_before"] = payload.interrupt_before
        if payload.interrupt_after:
            kwargs["interrupt_after"] = payload.interrupt_after
        if payload.durability:
            kwargs["durability"] = payload.durability
        extras = dict(self._context_extras)
        if "store" in extras:  # the graph sees only the run's tenant's workspaces
            extras["store"] = TenantStore(extras["store"], run.record.tenant)
        context = self._host.context_for(payload.context, extras)
        if context is not None:
            kwargs["context"] = context
        stream = run.stream
        async for item in self._host.graph.astream(
            graph_input,
            self._config(run, payload),
            stream_mode=cast(Any, _graph_modes(requested)),
            subgraphs=payload.stream_subgraphs,
            **kwargs,
        ):
            ns: tuple[str, ...] = ()
            if payload.stream_subgraphs:
                ns, mode, chunk = item
            else:
                mode, chunk = item
            suffix = "|" + "|".join(ns) if ns else ""
            if mode == "messages":
                message, meta = chunk
                stream.publish("messages" + suffix, [message, meta])
            else:
                stream.publish(mode + suffix, chunk)

    async def _finish(self, run: ActiveRun, status: str, error: str | None) -> None:
        """Record the outcome (run, then thread) and only then close the stream."""
        rec = run.record
        run.status = status
        self._dequeue(run)
        RUNS.labels(status=status).inc()
        if run.started is not None:
            RUN_DURATION.labels(status=status).observe(time.monotonic() - run.started)
        thread_status = "error" if status == "error" else "idle"
        try:
            if run.cancel_action == "rollback":
                await self._store.delete_run(rec.run_id, rec.thread_id)
            else:
                await self._store.set_run_status(rec.run_id, status, error)
            snapshot = await self._host.graph.aget_state({"configurable": {"thread_id": rec.thread_id}})
            interrupts = interrupts_by_task(snapshot)
            if interrupts and status != "error":
                thread_status = "interrupted"
            values = dumps_to_obj(snapshot.values)
            run.result = (
                {"__error__": {"error": error.split(":", 1)[0], "message": error}} if error else values
            )
            if interrupts and isinstance(run.result, dict):
                run.result["__interrupt__"] = [i for items in interrupts.values() for i in items]
            if await self._store.get_thread(rec.thread_id) is not None:
                await self._store.update_thread(
                    rec.thread_id, status=thread_status, values=values, interrupts=interrupts, set_values=True
                )
        except Exception:
            logger.exception("run %s: recording the outcome failed", rec.run_id)
        finally:
            run.stream.close()
            run.done.set()
            loop = asyncio.get_running_loop()
            loop.call_later(self._settings.finished_run_linger_s, self._runs.pop, rec.run_id, None)

    # control -------------------------------------------------------------------------------------

    def get_active(self, run_id: str) -> ActiveRun | None:
        """The in-process run, if this process executes (or recently executed) it."""
        return self._runs.get(run_id)

    async def cancel(self, run_id: str, *, action: str = "interrupt", wait: bool = False) -> bool:
        """Cancel a pending or running run; True when it was active here."""
        run = self._runs.get(run_id)
        if run is None or run.done.is_set() or run.task is None:
            return False
        if run.cancel_action is None:
            run.cancel_action = action
        run.task.cancel()
        if wait:
            await run.done.wait()
        return True

    def request_cancel(self, run_id: str, reason: str) -> None:
        """Synchronous cancel for ``finally`` blocks of disconnected streams."""
        run = self._runs.get(run_id)
        if run is not None and run.task is not None and not run.done.is_set():
            logger.info("run %s: cancelling (%s)", run_id, reason)
            run.cancel_action = run.cancel_action or "interrupt"
            run.task.cancel()

    async def get_run(self, thread_id: str, run_id: str) -> RunRecord:
        """The stored run. Raises RunNotFoundError."""
        record = await self._store.get_run(run_id, thread_id)
        if record is None:
            raise RunNotFoundError(f"run {run_id} not found on thread {thread_id}")
        return record

    async def wait(self, thread_id: str, run_id: str, poll_s: float = 0.5) -> Any:
        """Wait for a run to end; return its result (final values, ``__interrupt__`` / ``__error__``)."""
        run = self._runs.get(run_id)
        if run is not None:
            await run.done.wait()
            return run.result
        record = await self.get_run(thread_id, run_id)
        while record.status in ACTIVE_STATUSES:  # executed by another process
            await asyncio.sleep(poll_s)
            record = await self.get_run(thread_id, run_id)
        thread = await self._store.get_thread(thread_id)
        return thread.values if thread else None

    async def cancel_thread_runs(self, thread_id: str) -> None:
        """Cancel every active run of a thread (before deleting it)."""
        for run in list(self._runs.values()):
            if run.record.thread_id == thread_id:
                await self.cancel(run.record.run_id, wait=True)

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel all runs and wait for them to record their status; idempotent."""
        self._closing = True
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
            self._maintenance = None
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    # restart safety ------------------------------------------------------------------------------

    async def _maintain(self) -> None:
        interval = self._settings.run_lease_s / 3
        while True:
            try:
                await self._store.renew_leases(
                    self.worker_id,
                    [rid for rid, run in self._runs.items() if not run.done.is_set()],
                    time.time() + self._settings.run_lease_s,
                )
                await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("renewing leases / recovering runs failed; retrying")
            await asyncio.sleep(interval)

    async def recover(self) -> int:
        """Take over the runs of dead processes (expired leases): resume, restart or fail each.

        Returns:
            How many runs were taken over.
        """
        if self._closing:
            return 0
        now = time.time()
        claimed = await self._store.claim_orphans(self.worker_id, now, now + self._settings.run_lease_s)
        taken = 0
        for record in claimed:
            if record.run_id in self._runs:  # ours: this loop stalled past the lease, nothing died
                continue
            taken += 1
            with logs.bound(tenant=record.tenant, thread_id=record.thread_id, run_id=record.run_id):
                await self._recover_one(record)
        return taken

    async def _recover_one(self, record: RunRecord) -> None:
        try:
            payload = RunCreate.model_validate(record.kwargs)
        except ValidationError as exc:
            await self._fail_orphan(record, f"cannot resume: stored request is invalid: {exc}")
            return
        action = "started"  # a pending run never ran: start it as requested
        if record.status == "running":
            if record.attempts >= self._settings.run_max_attempts:
                await self._fail_orphan(
                    record,
                    f"the server stopped during this run {record.attempts} time(s); not resumed again "
                    f"(AGENTIC_RUN_MAX_ATTEMPTS={self._settings.run_max_attempts})",
                )
                return
            snapshot = await self._host.graph.aget_state({"configurable": {"thread_id": record.thread_id}})
            if (snapshot.metadata or {}).get("run_id") == record.run_id:
                action = "resumed"  # continue from the run's own last checkpoint
                payload = payload.model_copy(
                    update={"input": None, "command": None, "checkpoint": None, "checkpoint_id": None}
                )
            else:
                action = "restarted"  # it died before its first checkpoint: nothing to resume from
        RECOVERED_RUNS.labels(action=action).inc()
        logger.warning("run %s of a stopped server process %s (attempt %d)", record.run_id, action,
                       record.attempts + 1)  # fmt: skip
        self._schedule(record, payload)

    async def _fail_orphan(self, record: RunRecord, reason: str) -> None:
        RECOVERED_RUNS.labels(action="failed").inc()
        RUNS.labels(status="error").inc()
        logger.error("run %s marked failed: %s", record.run_id, reason)
        await self._store.set_run_status(record.run_id, "error", reason)
        if await self._store.get_thread(record.thread_id) is not None:
            await self._store.update_thread(record.thread_id, status="error")
