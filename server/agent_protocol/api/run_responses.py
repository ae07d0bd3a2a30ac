"""The answers of a run just created: its event stream, or its final values when it ends.

Why a module of its own: a run on a thread (``/threads/{id}/runs/stream|wait``) and a stateless run
(``/runs/stream|wait``) are answered the same way once the run exists; only how it was created
differs.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request, Response
from sse_starlette import EventSourceResponse

from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.service import AgentProtocolService
from server.agent_protocol.storage.records import RunRecord
from server.agent_protocol.streaming.sse import event_stream_response, run_headers, wait_response
from server.agent_protocol.streaming.streams import Subscription
from server.middleware import received_at

__all__ = ["new_run_stream", "new_run_wait"]


def _on_client_leaving(
    service: AgentProtocolService, run_id: str, body: RunCreate
) -> Callable[[], None] | None:
    """What the response calls when the creating client leaves: cancel if it (or the default) says so."""
    cancel = (body.on_disconnect or service.settings.default_on_disconnect) == "cancel"
    return service.manager.on_disconnect(run_id, cancel=cancel, who="client")


def new_run_stream(
    service: AgentProtocolService, record: RunRecord, sub: Subscription, body: RunCreate, request: Request
) -> EventSourceResponse:
    """Stream a new run's events; the headers go out at once, a queued run's first event is its place."""
    manager, run_id = service.manager, record.run_id
    return event_stream_response(
        sub,
        headers=run_headers(record.thread_id, run_id, "stream"),
        on_disconnect=_on_client_leaving(service, run_id, body),
        heartbeat_s=service.settings.heartbeat_s,
        first=lambda: manager.queued_event(run_id),
        coalesce_s=service.settings.stream_coalesce_s,
        received_at=received_at(request.scope),
    )


def new_run_wait(service: AgentProtocolService, record: RunRecord, body: RunCreate) -> Response:
    """Answer with a new run's final values when it ends (blank-line heartbeats until then)."""
    manager, thread_id, run_id = service.manager, record.thread_id, record.run_id
    return wait_response(
        lambda: manager.wait(thread_id, run_id),
        headers=run_headers(thread_id, run_id, "join"),
        on_disconnect=_on_client_leaving(service, run_id, body),
        heartbeat_s=service.settings.heartbeat_s,
    )
