"""The vectors of indexed store items, in a plain table beside LangGraph's ``store`` table.

Why our own table rather than LangGraph's vector index: that index needs the ``pgvector``
extension on Postgres (not packaged for Debian 12) or the ``sqlite-vec`` extension loaded into
SQLite (impossible in a Python built without loadable extensions, as this project's is). A vector
here is a normalised float32 array in a ``BLOB`` / ``BYTEA``; a semantic search ranks the
candidates in process (:mod:`.semantic`). Its own migration list and version table
(``ap_store_vector_migrations``), like LangGraph's own ``vector_migrations``, so it never shares
version numbers with the server's tables. Rows of items the TTL sweep deleted are dropped after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from workspace.migrations import MigrationSet

__all__ = ["MIGRATIONS", "Pair", "Vectors", "drop_orphans", "load_vectors", "replace_vectors"]

Pair = tuple[str, str]
"""An item's stored ``prefix`` (its full namespace joined with dots) and ``key``."""
Vectors = list[tuple[str, np.ndarray]]
"""An item's vectors: one per indexed text, named by field path (``path#n``)."""

_CHUNK = 400


def _steps(blob: str) -> list[list[str]]:
    return [
        [
            f"""CREATE TABLE IF NOT EXISTS ap_store_vectors (
                prefix TEXT NOT NULL,
                key TEXT NOT NULL,
                field VARCHAR(512) NOT NULL,
                dims INTEGER NOT NULL,
                embedding {blob} NOT NULL,
                PRIMARY KEY (prefix, key, field)
            )""",
        ]
    ]


_meta = sa.MetaData()
migrations_t = sa.Table(
    "ap_store_vector_migrations",
    _meta,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40)),
)
vectors_t = sa.Table(
    "ap_store_vectors",
    _meta,
    sa.Column("prefix", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("field", sa.String(512), primary_key=True),
    sa.Column("dims", sa.Integer),
    sa.Column("embedding", sa.LargeBinary),
)
MIGRATIONS = MigrationSet(
    "store vectors", migrations_t, {"sqlite": _steps("BLOB"), "postgresql": _steps("BYTEA")}
)


def replace_vectors(conn: Connection, items: Mapping[Pair, Vectors | None]) -> None:
    """Replace the vectors of each item (None or an empty list: the item has none any more)."""
    pairs = list(items)
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start : start + _CHUNK]
        conn.execute(vectors_t.delete().where(sa.tuple_(vectors_t.c.prefix, vectors_t.c.key).in_(chunk)))
    rows = [
        {"prefix": prefix, "key": key, "field": field, "dims": int(vec.shape[0]), "embedding": vec.tobytes()}
        for (prefix, key), vectors in items.items()
        for field, vec in vectors or []
    ]
    if rows:
        conn.execute(vectors_t.insert(), rows)


def load_vectors(conn: Connection, pairs: Sequence[Pair], dims: int) -> dict[Pair, np.ndarray]:
    """The vectors of ``dims`` dimensions of each item, stacked (rows of other models are skipped)."""
    found: dict[Pair, list[np.ndarray]] = {}
    for start in range(0, len(pairs), _CHUNK):
        chunk = list(pairs[start : start + _CHUNK])
        query = sa.select(vectors_t.c.prefix, vectors_t.c.key, vectors_t.c.embedding).where(
            sa.tuple_(vectors_t.c.prefix, vectors_t.c.key).in_(chunk), vectors_t.c.dims == dims
        )
        for prefix, key, blob in conn.execute(query):
            found.setdefault((prefix, key), []).append(np.frombuffer(blob, dtype=np.float32))
    return {pair: np.stack(rows) for pair, rows in found.items()}


def drop_orphans(conn: Connection) -> int:
    """Delete the vectors of items no longer in LangGraph's ``store`` table (expired and swept)."""
    result = conn.execute(
        sa.text(
            "DELETE FROM ap_store_vectors WHERE NOT EXISTS (SELECT 1 FROM store s "
            "WHERE s.prefix = ap_store_vectors.prefix AND s.key = ap_store_vectors.key)"
        )
    )
    return int(result.rowcount or 0)


def as_rows(vectors: Iterable[tuple[str, list[float]]]) -> Vectors:
    """Normalise embeddings to unit length, float32 (a dot product is then the cosine)."""
    rows: Vectors = []
    for field, values in vectors:
        vec = np.asarray(values, dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        rows.append((field, vec / norm if norm > 0 else vec))
    return rows
