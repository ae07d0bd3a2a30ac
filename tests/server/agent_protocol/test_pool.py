"""Postgres: a pooled connection killed while idle is replaced before use (pinged only when idle)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError

from server.agent_protocol.storage import ProtocolStore, async_url
from tests.server.agent_protocol.support import fresh_database


def _kill_other_connections(url: str) -> int:
    """Terminate every other backend of the database (as a database restart would)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


@pytest.mark.parametrize("idle_ping_s", [0.0, 3600.0])
async def test_idle_connection_killed_is_replaced(
    postgres_url: str, tmp_path: Path, idle_ping_s: float
) -> None:
    url = fresh_database(postgres_url)
    store = ProtocolStore.from_url(async_url(url, tmp_path), idle_ping_s=idle_ping_s)
    try:
        await store.setup()
        assert await store.get_thread("none") is None  # a pooled connection now exists
        assert _kill_other_connections(url) >= 1
        if idle_ping_s > 0:  # not idle long enough to be pinged: the dead connection is used
            with pytest.raises(DBAPIError):
                await store.get_thread("none")
        assert await store.get_thread("none") is None  # pinged and replaced (or dropped by the failure)
    finally:
        await store.close()
