"""Build the async SQLAlchemy engine for a database URL (SQLite via aiosqlite, Postgres via psycopg 3).

SQLite needs help to behave like a database with many writers: WAL (readers never block the
writer), a busy timeout (writers from other processes wait instead of failing), foreign keys on,
and SQLAlchemy's own ``BEGIN`` so writes can ask for ``BEGIN IMMEDIATE`` (take the write lock up
front instead of failing to upgrade a read lock half-way, which SQLite reports as "database is locked").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["WRITE_OPTION", "create_engine_for_url", "enable_wal", "libpq_url", "normalise_url", "sqlite_busy"]

WRITE_OPTION = "agentic_write"  # execution option: the transaction will write (SQLite: BEGIN IMMEDIATE)
_SQLITE_BUSY_SECONDS = 30.0


def normalise_url(url: str) -> str:
    """Return the async-driver form of ``url``.

    ``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg://``; ``sqlite:///`` ->
    ``sqlite+aiosqlite:///``; the async forms pass through.

    Raises:
        ValueError: for another database, another driver, or an in-memory SQLite database
            (each pooled connection would see its own empty database).
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql":
        if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
            raise ValueError(f"unsupported Postgres driver {driver!r}: use postgresql:// (psycopg 3)")
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+aiosqlite"):
            raise ValueError(f"unsupported SQLite driver {driver!r}: use sqlite:///path/to/file.db")
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(
                "in-memory SQLite is not supported: give a file path (sqlite:///path/to/file.db)"
            )
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:///... or postgresql://...")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The plain ``postgresql://`` form of a Postgres URL, for psycopg connections outside SQLAlchemy."""
    for prefix in ("postgresql+psycopg://", "postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlite_busy(exc: BaseException | None) -> bool:
    """Whether an SQLite error means another connection holds the lock ("locked" / "busy").

    The connections that never wait (busy timeout 0, on the event loop) get this at once; their
    callers run the same work again on a thread whose connection waits.
    """
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def enable_wal(cursor: Any) -> None:
    """Put the database in WAL mode (persistent in the file), tolerating a race on a new file.

    Why the loop: switching to WAL needs an exclusive lock, and SQLite answers "database is locked"
    at once (no busy handler) when another process opens the same new file at that moment; once
    the file is in WAL mode the switch is a no-op and never waits.
    """
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, wrapped by the async adapter
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN from the driver; _on_sqlite_begin emits it
    cursor = dbapi_connection.cursor()
    enable_wal(cursor)
    for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_engine_for_url(url: str, **engine_kwargs: Any) -> AsyncEngine:
    """Create the engine for ``url`` (normalised first); SQLite's parent directory is created."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": _SQLITE_BUSY_SECONDS, **engine_kwargs.pop("connect_args", {})}
        engine = create_async_engine(url, connect_args=connect_args, **engine_kwargs)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        return engine
    return create_async_engine(url, **engine_kwargs)
