"""Postgres notifications between server processes: the channels, ``NOTIFY`` and the ``LISTEN`` side.

Changes other processes care about (a run queued or a slot freed, a cancel request, new stream
events) are announced with ``NOTIFY`` in the transaction that makes them; on SQLite nothing is sent
and processes poll.

``LISTEN`` runs on a dedicated psycopg connection.
Why a connection of its own: notifications arrive only on a connection that stays idle in
``LISTEN``; the SQLAlchemy pool hands its connections to queries. The connection reconnects after
a failure and then calls every handler once with an empty payload, since notifications sent while
it was away are lost (the poll fallbacks would catch up anyway, only later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.agent_protocol.storage.raw import RawStatement
from workspace.engine import libpq_url

__all__ = ["CANCEL_CHANNEL", "EVENTS_CHANNEL", "QUEUE_CHANNEL", "PgListener", "notify", "notify_each"]

logger = logging.getLogger(__name__)

QUEUE_CHANNEL = "ap_queue"  # a run was queued or a slot freed: claimers look again
CANCEL_CHANNEL = "ap_cancel"  # payload: run id whose owner must cancel it
EVENTS_CHANNEL = "ap_events"  # payload: run id with new persisted stream events


# One statement for any number of payloads: an event flush announces every run it wrote.
_NOTIFY_EACH = RawStatement(
    sa.text("SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload")
)


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    """``NOTIFY`` on Postgres (sent when the transaction commits); nothing on SQLite.

    Called inside the work function a transaction of the store runs (a sync connection).
    """
    notify_each(conn, channel, [payload])


def notify_each(conn: Connection, channel: str, payloads: Iterable[str]) -> None:
    """One ``NOTIFY`` per payload, sent in one statement (Postgres; nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        _NOTIFY_EACH.execute(conn, {"channel": channel, "payloads": list(payloads)}).close()


class PgListener:
    """Dispatches ``NOTIFY`` payloads of some channels to their handlers."""

    def __init__(self, url: str, handlers: Mapping[str, Callable[[str], None]]) -> None:
        self._url = libpq_url(url)
        self._handlers = dict(handlers)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        """Connect and listen in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-listener")

    async def _run(self) -> None:
        from psycopg import AsyncConnection

        delay = 0.5
        while True:
            try:
                async with await AsyncConnection.connect(self._url, autocommit=True) as conn:
                    for channel in self._handlers:
                        await conn.execute(f'LISTEN "{channel}"')
                    self.connected.set()
                    delay = 0.5
                    for handler in self._handlers.values():
                        handler("")
                    async for note in conn.notifies():
                        handle = self._handlers.get(note.channel)
                        if handle is not None:
                            try:
                                handle(note.payload)
                            except Exception:
                                logger.exception("handling a notification on %s failed", note.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                logger.warning("run queue listener lost its connection (%s); reconnecting", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        """Stop listening; idempotent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
