"""Hot statements run on the driver's cursor: compiled once per dialect, no SQLAlchemy per execution.

Why: even a statement built once (:mod:`.statements`) costs SQLAlchemy a cache key, an execution
context and result processing on every execution, which profiled as much Python time as SQLite
spent running it (about a fifth of the server's CPU under ``bench/server_load.py``). A
:class:`RawStatement` compiles its Core statement for the connection's dialect the first time,
then hands the SQL string and parameters straight to the DBAPI cursor of the ``Connection`` the
store's transaction runs on: the same transaction (SQLAlchemy's ``BEGIN`` / ``COMMIT`` still
frame it), the same SQL, only the per-call layers gone. Works on SQLite (``sqlite3``, ``qmark``)
and on Postgres (psycopg 3, sync, on the runner's threads: :mod:`.postgres`; ``pyformat``).
Only plain columns (text, integers, floats) come back, so rows need no result processing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["RawStatement"]


class _Compiled:
    __slots__ = ("defaults", "names", "sql")

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.defaults = dict(compiled.params)  # literal values of the statement (``error=None``)
        positions = getattr(compiled, "positiontup", None)  # None: named parameters (psycopg)
        self.names: tuple[str, ...] | None = tuple(positions) if positions is not None else None

    def args(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = {**self.defaults, **params} if self.defaults else params
        if self.names is None:
            return {k: _plain(v) for k, v in values.items()}
        return tuple(_plain(values[name]) for name in self.names)


def _plain(value: Any) -> Any:
    # A StrEnum is a str to sqlite3, but psycopg would dump an Enum by its name.
    return value.value if isinstance(value, enum.Enum) else value


def _raise_wrapped(conn: Connection, sql: str, args: Any, exc: Exception) -> None:
    """Raise a driver error as SQLAlchemy's class for it; return for any other error."""
    dbapi = conn.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        raise sa.exc.DBAPIError.instance(sql, args, exc, dbapi.Error, dialect=conn.dialect) from exc


class RawStatement:
    """One Core statement (bind parameters only, no expanding ``IN``) run on the DBAPI cursor."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        self._statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, conn: Connection) -> _Compiled:
        name = conn.dialect.name
        compiled = self._by_dialect.get(name)
        if compiled is None:
            compiled = self._by_dialect[name] = _Compiled(self._statement, conn.dialect)
        return compiled

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Execute in ``conn``'s transaction; returns the DBAPI cursor (rows, ``rowcount``).

        Raises:
            sqlalchemy.exc.DBAPIError: the driver's error, wrapped as SQLAlchemy would
                (``IntegrityError``, ``OperationalError``, ...), so callers catch the same types.
        """
        compiled = self._compiled(conn)
        args = compiled.args(params)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, args)
        except Exception as exc:
            cursor.close()
            _raise_wrapped(conn, compiled.sql, args, exc)
            raise
        return cursor

    def executemany(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Execute once per parameter set, in one driver call."""
        compiled = self._compiled(conn)
        args = [compiled.args(r) for r in rows]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, args)  # type: ignore[arg-type]
        except Exception as exc:
            _raise_wrapped(conn, compiled.sql, args, exc)
            raise
        finally:
            cursor.close()

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """All rows, each as a column-name mapping."""
        cursor = self.execute(conn, params)
        names = [d[0] for d in cursor.description]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        cursor.close()
        return found

    def first(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a mapping, or None."""
        found = self.rows(conn, params)
        return found[0] if found else None

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        cursor = self.execute(conn, params)
        row = cursor.fetchone()
        cursor.close()
        return row[0] if row is not None else None

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Rows the statement changed."""
        cursor = self.execute(conn, params)
        count = int(cursor.rowcount or 0)
        cursor.close()
        return count
