"""Executes one claimed run: the graph in its own asyncio task, its events into the run's hub.

Why a task of its own: an SSE response that iterates ``graph.astream`` directly keeps running
after the client has gone, so a disconnect or a cancel could not stop the graph. Here the HTTP
handlers only read a subscription; cancelling means ``task.cancel()``, which stops the graph at
its next await (well under a second).

Every event goes to the run's in-memory hub at once and to the event log (batched writes), so
clients of other processes can follow the run. The outcome is recorded in this order: events
flushed, run status, thread status and values, and only then the stream closes, so a client that
sees the stream end and asks for the run always finds it finished with all its events stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command
from sqlalchemy.engine import Connection

from agents.checkpoint import flush_checkpoints
from server import logs
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.graphs import GraphHost, interrupts_by_task
from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.serde import dumps_to_obj
from server.agent_protocol.status import CancelAction, Handover, RunStatus, ThreadStatus
from server.agent_protocol.storage.events import EventLog
from server.agent_protocol.storage.notify import EVENTS_CHANNEL, notify
from server.agent_protocol.storage.queue import RunQueue
from server.agent_protocol.storage.records import RunRecord
from server.agent_protocol.storage.stateless import drop_temporary_thread
from server.agent_protocol.storage.store import (
    ProtocolStore,
    Work,
    delete_run_work,
    run_status_update,
    thread_update,
)
from server.agent_protocol.streaming.hubs import StreamHubs
from server.agent_protocol.streaming.streams import RunStream
from server.apps.agent_view import TenantApps
from server.apps.manager import AppManager
from server.metrics import RUN_DURATION, RUNS
from server.tenancy import TenantStore
from server.tracing import end_run_span, run_callbacks, run_span

__all__ = ["ActiveRun", "RunExecutor"]

logger = logging.getLogger(__name__)

AGENT_ADMISSION_WAIT_S = 300.0  # an agent's sandbox run waits this long for room before it fails


@dataclass(eq=False)
class ActiveRun:
    """A run this process claimed: executing, about to, or just finished."""

    record: RunRecord
    payload: RunCreate
    resuming: bool = False  # an earlier attempt stored events: number on from them
    stream: RunStream | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    cancel_action: CancelAction | None = None  # what a user asked for (the first request wins)
    handover: Handover | None = None  # this process lets go of it: the next owner records the outcome
    status: RunStatus = RunStatus.PENDING
    error: str | None = None  # why it failed
    result: Any = None
    started: float | None = None  # monotonic time execution began
    entered: bool = False  # its task began (a task cancelled before that never runs its body)
    finishing: bool = False  # recording its outcome: never interrupted

    @property
    def stopping(self) -> bool:
        """Cancelled or handed over: it must not start, and stops at its next await."""
        return self.cancel_action is not None or self.handover is not None

    def stop(self, *, cancel: CancelAction | None = None, handover: Handover | None = None) -> None:
        """Ask the run to stop: a user's cancel (the first one wins), or this process letting go of it.

        Its task is cancelled only on the first request and only while it executes. A task
        cancelled before its first step never runs its body: nothing would record the run's end,
        close its stream or free its slot (the server then executed nothing more). One cancelled
        while it records its outcome would leave the outcome half-written. In both cases the task
        sees :attr:`stopping` itself (before it starts, or not at all once it is ending).
        """
        was_stopping = self.stopping
        if cancel is not None and self.cancel_action is None:
            self.cancel_action = cancel
        if handover is not None:
            self.handover = handover
        if not was_stopping and self.task is not None and self.entered and not self.finishing:
            self.task.cancel()


def _graph_modes(requested: list[str]) -> list[str]:
    """LangGraph's modes for the requested protocol modes (``messages-tuple`` is ``messages``)."""
    modes = {"messages" if m in ("messages", "messages-tuple") else m for m in requested}
    modes.discard("events")
    return sorted(modes or {"values"})


class RunExecutor:
    """Runs the graph for claimed runs and records their outcome."""

    def __init__(
        self,
        *,
        store: ProtocolStore,
        queue: RunQueue,
        host: GraphHost,
        settings: AgentProtocolSettings,
        events: EventLog | None,
        hubs: StreamHubs,
        context_extras: dict[str, Any] | None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._host = host
        self._settings = settings
        self._events = events
        self._hubs = hubs
        self._context_extras = {k: v for k, v in (context_extras or {}).items() if v is not None}

    def _publish(self, run: ActiveRun, event: str, data: object) -> None:
        assert run.stream is not None
        item = run.stream.publish(event, data)
        if self._events is not None:
            self._events.append(run.record.run_id, item)

    async def execute(self, run: ActiveRun) -> None:
        """The body of the run's task: start, drive the graph, record the outcome, set ``done``.

        With tracing on, all of it is the run's span (a child of the request that made the run).
        """
        rec = run.record
        logs.bind(tenant=rec.tenant, thread_id=rec.thread_id, run_id=rec.run_id)
        with run_span(
            tenant=rec.tenant,
            thread_id=rec.thread_id,
            run_id=rec.run_id,
            assistant_id=rec.assistant_id,
            traceparent=rec.trace_parent,
        ) as span:
            await self._execute(run)
            end_run_span(span, run.status, run.error)

    async def _execute(self, run: ActiveRun) -> None:
        rec = run.record
        run.entered = True  # from here a cancel reaches this task (see ActiveRun.stop)
        try:
            if not run.stopping:
                run.stream = await self._hubs.for_execution(rec.run_id, run.resuming)
                run.status = RunStatus.RUNNING
                run.started = time.monotonic()
                first = run.payload.input if isinstance(run.payload.input, dict) else None
                attempt = await self._queue.start_attempt(rec.run_id, rec.thread_id, first)
                self._publish(run, "metadata", {"run_id": rec.run_id, "attempt": attempt})
                status, error = RunStatus.SUCCESS, None
                try:
                    async with self._checkpoints_committed(run):
                        await self._drive(run)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("run %s failed: %s: %s", rec.run_id, type(exc).__name__, exc)
                    status, error = RunStatus.ERROR, f"{type(exc).__name__}: {exc}"
                    self._publish(run, "error", {"error": type(exc).__name__, "message": str(exc)})
                await self._finish(run, status, error)
                return
        except asyncio.CancelledError:
            logger.info("run %s cancelled (%s)", rec.run_id, run.cancel_action or run.handover or "shutdown")
        await self._finish(run, RunStatus.INTERRUPTED, None)

    def abandon(self, run: ActiveRun) -> None:
        """End a run whose task never began: close its stream and release its waiters (nothing recorded)."""
        self._hubs.finished(run.record.run_id)
        run.done.set()

    @contextlib.asynccontextmanager
    async def _checkpoints_committed(self, run: ActiveRun) -> AsyncIterator[None]:
        """Commit the checkpoints the run's graph queued once it ends, before its outcome is recorded.

        A run reported finished has them all stored, and one whose checkpoints could not be stored
        ends in error (this raises), not success. A run that failed or was stopped has its
        checkpoints committed all the same (one handed over resumes from its latest), and its own
        error is the one reported.
        """
        saver = self._host.graph.checkpointer
        if not isinstance(saver, BaseCheckpointSaver):
            yield
            return
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                await flush_checkpoints(saver, run.record.thread_id)
            raise
        await flush_checkpoints(saver, run.record.thread_id)

    def _config(self, run: ActiveRun) -> RunnableConfig:
        payload = run.payload
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
        callbacks = run_callbacks()  # the spans of nodes and model calls; none with tracing off
        if callbacks:
            config["callbacks"] = callbacks
        return config  # type: ignore[return-value]

    def _server_context(self, tenant: str) -> dict[str, Any]:
        """The server's objects for one run, scoped to its tenant (they override anything a client sent).

        The store is a :class:`TenantStore`, the sandbox a view charging the tenant's admission
        budget and the app manager a :class:`TenantApps`, so a run reaches only its tenant's
        workspaces and apps whatever its input or context says.
        """
        extras = dict(self._context_extras)
        if "store" in extras:
            extras["store"] = TenantStore(extras["store"], tenant)
        if isinstance(extras.get("apps"), AppManager):
            extras["apps"] = TenantApps(extras["apps"], tenant)
        elif "apps" in extras:
            extras["apps"] = None  # never an unscoped manager
        for_owner = getattr(extras.get("sandbox"), "for_owner", None)
        if for_owner is not None:
            extras["sandbox"] = for_owner(tenant, wait_s=AGENT_ADMISSION_WAIT_S)
        return extras

    async def _drive(self, run: ActiveRun) -> None:
        """Stream the graph into the run's hub; event names and shapes follow the LangGraph server."""
        payload = run.payload
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
        # Stated even when it is LangGraph's default: the checkpointer queues a step's rows only
        # for a run that says "async" (its other callers wait for their commit).
        kwargs["durability"] = payload.durability or "async"
        context = self._host.context_for(
            self._host.policy.check(payload.context), self._server_context(run.record.tenant)
        )
        if context is not None:
            kwargs["context"] = context
        async for item in self._host.graph_for(run.record.tenant).astream(
            graph_input,
            self._config(run),
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
                self._publish(run, "messages" + suffix, [message, meta])
            else:
                self._publish(run, mode + suffix, chunk)

    async def _finish(self, run: ActiveRun, status: RunStatus, error: str | None) -> None:
        """Record the outcome (events, run, then thread) and only then close the stream."""
        rec = run.record
        run.finishing = True  # a cancel from now on is not raised here (see ActiveRun.stop)
        run.status, run.error = status, error
        ended_here = run.handover is None
        if ended_here:
            RUNS.labels(status=status).inc()
        if run.started is not None and ended_here:
            RUN_DURATION.labels(status=status).observe(time.monotonic() - run.started)
        try:
            if run.handover == Handover.HANDOFF and self._events is not None:
                await self._events.flush()  # the next owner numbers its events on from these
            if not ended_here:
                return  # the process that takes it over records the outcome
            thread = await self._final_thread_state(run, status, error)
            temporary = run.payload.on_completion == "delete"  # a stateless run's own thread
            if temporary:
                thread = drop_temporary_thread(rec.run_id, rec.thread_id, run.result)
            end: Work[Any] = (
                delete_run_work(rec.run_id, rec.thread_id)
                if run.cancel_action == CancelAction.ROLLBACK
                else run_status_update(rec.run_id, status, error)
            )

            def record(conn: Connection) -> None:
                """One transaction: the run's last events (see flush), its end, the thread's state."""
                end(conn)
                thread(conn)  # a deleted thread: no row, nothing updated
                notify(conn, EVENTS_CHANNEL, rec.run_id)

            if self._events is not None:
                await self._events.flush(then=record)
                self._events.wake_local(rec.run_id)
            else:
                await self._store.write(record)
            if temporary:
                await self._drop_checkpoints(rec.thread_id)
        except Exception:
            logger.exception("run %s: recording the outcome failed", rec.run_id)
        finally:
            self._hubs.finished(rec.run_id)
            run.done.set()

    async def _drop_checkpoints(self, thread_id: str) -> None:
        """Delete a temporary thread's checkpoints (its row went with the run's end)."""
        checkpointer = self._host.graph.checkpointer
        if isinstance(checkpointer, BaseCheckpointSaver):
            await checkpointer.adelete_thread(thread_id)

    async def _final_thread_state(self, run: ActiveRun, status: RunStatus, error: str | None) -> Work[None]:
        """Set the run's result from the thread's last checkpoint; returns the thread's update."""
        thread_id = run.record.thread_id
        thread_status = ThreadStatus.ERROR if status == RunStatus.ERROR else ThreadStatus.IDLE
        try:
            snapshot = await self._host.graph.aget_state({"configurable": {"thread_id": thread_id}})
        except Exception:
            logger.exception("run %s: reading the thread's final state failed", run.record.run_id)
            run.result = {"__error__": {"error": error.split(":", 1)[0], "message": error}} if error else None
            return thread_update(thread_id, status=thread_status)
        interrupts = interrupts_by_task(snapshot)
        if interrupts and status != RunStatus.ERROR:
            thread_status = ThreadStatus.INTERRUPTED
        values = dumps_to_obj(snapshot.values)
        run.result = {"__error__": {"error": error.split(":", 1)[0], "message": error}} if error else values
        if interrupts and isinstance(run.result, dict):
            run.result["__interrupt__"] = [i for items in interrupts.values() for i in items]
        return thread_update(
            thread_id, status=thread_status, values=values, interrupts=interrupts, set_values=True
        )
