"""Full-text search over workspace files and run outputs, on SQLite (FTS5) and Postgres (tsvector).

Both dialects see the same words: a query is split into terms with the same rule FTS5's
``unicode61`` tokenizer and our Postgres index expression use (letters and digits; ``_``, ``.``
and other punctuation separate), so ``np.array`` finds ``array``. All terms must match; when that
finds nothing and the query has several terms, any term may match. Snippets are cut in Python
so they look the same on both dialects. On Postgres only the first
:data:`workspace.migrations.PG_TSVECTOR_CHARS` characters of a document are indexed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, insert, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from workspace.base import SearchHit
from workspace.schema import search_documents

__all__ = ["document_key", "make_snippet", "query_terms", "run_search", "upsert_document"]

_TERM = re.compile(r"[^\W_]+")
_MAX_TERMS = 32
_SNIPPET_RADIUS = 80

_SQLITE_SEARCH = text(
    """SELECT d.kind, d.path, d.run_id, d.version_id, d.body, -bm25(search_fts) AS rank
    FROM search_fts JOIN search_documents AS d ON d.id = search_fts.rowid
    WHERE search_fts MATCH :q AND d.workspace_id = :ws
    ORDER BY rank DESC, d.path LIMIT :limit"""
)
_POSTGRES_SEARCH = text(
    """SELECT d.kind, d.path, d.run_id, d.version_id, d.body, ts_rank(d.tsv, q) AS rank
    FROM search_documents AS d, to_tsquery('simple'::regconfig, :q) AS q
    WHERE d.workspace_id = :ws AND d.tsv @@ q
    ORDER BY rank DESC, d.path LIMIT :limit"""
)


def query_terms(query: str) -> list[str]:
    """Split a free-text query into search terms (at most 32, duplicates dropped)."""
    seen: dict[str, None] = {}
    for term in _TERM.findall(query):
        seen.setdefault(term.lower(), None)
    return list(seen)[:_MAX_TERMS]


def _match_expression(dialect: str, terms: Sequence[str], *, any_term: bool) -> str:
    # Terms hold only letters and digits, so they cannot inject query syntax in either dialect.
    if dialect == "postgresql":
        return (" | " if any_term else " & ").join(terms)
    return (" OR " if any_term else " ").join(f'"{t}"' for t in terms)


async def upsert_document(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    kind: str,
    run_id: str,
    path: str,
    version_id: str | None,
    body: str,
    size: int,
    created_at: datetime,
    is_new: bool = False,
) -> None:
    """Insert or replace the searchable text for one file / run output (inside the caller's transaction).

    ``size`` is the UTF-8 length of ``body``. ``is_new`` skips the UPDATE when the caller knows no
    document exists yet (a file's first version).
    """
    key = document_key(workspace_id=workspace_id, kind=kind, run_id=run_id, path=path)
    values = {"version_id": version_id, "body": body, "size": size, "created_at": created_at}
    if not is_new:
        updated = await conn.execute(update(search_documents).where(key).values(**values))
        is_new = updated.rowcount == 0
    if is_new:
        await conn.execute(
            insert(search_documents).values(
                workspace_id=workspace_id,
                kind=kind,
                run_id=run_id,
                path=path,
                **values,
            )
        )


def document_key(*, workspace_id: str, kind: str, run_id: str, path: str) -> ColumnElement[bool]:
    """Select one document by its unique key."""
    return (
        (search_documents.c.workspace_id == workspace_id)
        & (search_documents.c.kind == kind)
        & (search_documents.c.run_id == run_id)
        & (search_documents.c.path == path)
    )


def make_snippet(body: str, terms: Sequence[str]) -> str:
    """Return the text around the first matched term, terms wrapped in ``**``, on one line."""
    if not terms:
        return " ".join(body[: 2 * _SNIPPET_RADIUS].split())
    words = "|".join(re.escape(t) for t in terms)
    pattern = re.compile(rf"(?<![^\W_])(?:{words})(?![^\W_])", re.IGNORECASE)
    found = pattern.search(body)
    if found is None:  # matched on the path only
        window = body[: 2 * _SNIPPET_RADIUS]
        prefix, suffix = "", "…" if len(body) > len(window) else ""
    else:
        start = max(0, found.start() - _SNIPPET_RADIUS)
        end = min(len(body), found.end() + _SNIPPET_RADIUS)
        window = body[start:end]
        prefix = "…" if start > 0 else ""
        suffix = "…" if end < len(body) else ""
    marked = pattern.sub(lambda m: f"**{m.group(0)}**", window)
    return prefix + " ".join(marked.split()) + suffix


async def run_search(conn: AsyncConnection, workspace_id: str, query: str, limit: int) -> list[SearchHit]:
    """Return up to ``limit`` hits, best first (all terms first, then any term)."""
    terms = query_terms(query)
    if not terms:
        return []
    dialect = conn.dialect.name
    statement = _POSTGRES_SEARCH if dialect == "postgresql" else _SQLITE_SEARCH
    rows: Sequence[Row[Any]] = []
    for any_term in (False, True) if len(terms) > 1 else (False,):
        params = {
            "q": _match_expression(dialect, terms, any_term=any_term),
            "ws": workspace_id,
            "limit": limit,
        }
        rows = (await conn.execute(statement, params)).all()
        if rows:
            break
    hits: list[SearchHit] = []
    for row in rows:
        m = row._mapping
        hits.append(
            SearchHit(
                kind=m["kind"],
                path=m["path"],
                version_id=m["version_id"],
                run_id=m["run_id"] or None,
                snippet=make_snippet(m["body"], terms),
                rank=float(m["rank"]),
            )
        )
    return hits
