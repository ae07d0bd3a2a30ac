"""Persistence of the Agent Protocol: every SQL statement on its tables.

``store`` (threads and runs), ``assistants`` (tenants' assistants and their versions),
``stateless`` (a stateless run's temporary thread), ``queue`` (claims, leases, cancel requests),
``events`` (the stream events other processes read), ``notify`` (Postgres ``NOTIFY`` /
``LISTEN``), ``tables`` (schema and migrations), ``records`` (rows as records).
"""

from server.agent_protocol.storage.records import RunRecord, ThreadRecord
from server.agent_protocol.storage.store import ProtocolStore, async_url

__all__ = ["ProtocolStore", "RunRecord", "ThreadRecord", "async_url"]
