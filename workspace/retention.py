"""Retention and quotas for indexed run output, so logs cannot fill the database.

Run output (``VersionStore.index_run_output``) lives only in ``search_documents`` (kind
``run_output``); files and their versions are never touched here. Three limits, all from
:class:`RunOutputPolicy`:

* each output is cut to ``max_bytes`` keeping its head and its tail (errors come last) around a marker;
* a tenant's outputs together hold at most ``quota_bytes``: a write that would pass it first deletes
  that tenant's oldest outputs, in the same transaction as the write;
* outputs older than ``retention_s`` are deleted by :func:`prune_run_outputs`, which the server runs
  periodically (:func:`prune_periodically`) and ``agentic prune`` runs once.

Concurrency: every write runs in the store's write transaction. SQLite has one writer at a time
(``BEGIN IMMEDIATE``), so the quota holds exactly there. On Postgres a transaction-scoped advisory
lock per tenant makes a tenant's writes take turns; under READ COMMITTED each later statement sees
what the previous holder committed, so the quota holds exactly there too (two tenants whose names
hash alike merely take turns).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from workspace.errors import WorkspaceNotFoundError
from workspace.schema import search_documents, workspaces
from workspace.search import document_key, upsert_document

__all__ = [
    "DEFAULT_RUN_OUTPUT_MAX_BYTES",
    "DEFAULT_RUN_OUTPUT_PRUNE_INTERVAL_S",
    "DEFAULT_RUN_OUTPUT_QUOTA_BYTES",
    "DEFAULT_RUN_OUTPUT_RETENTION_S",
    "RUN_OUTPUT",
    "RunOutputPolicy",
    "clip_output",
    "make_room",
    "prune_periodically",
    "prune_run_outputs",
    "save_run_output",
]

logger = logging.getLogger(__name__)

RUN_OUTPUT = "run_output"  # search_documents.kind of indexed run output
# 250 KB: with any path (<= 4096 chars) still inside the part Postgres indexes (PG_TSVECTOR_CHARS),
# so a word from the tail stays searchable on both dialects.
DEFAULT_RUN_OUTPUT_MAX_BYTES = 256_000
DEFAULT_RUN_OUTPUT_QUOTA_BYTES = 64 * 1024 * 1024
DEFAULT_RUN_OUTPUT_RETENTION_S = 7 * 24 * 3600
DEFAULT_RUN_OUTPUT_PRUNE_INTERVAL_S = 3600
_HEAD_SHARE = 3  # the head keeps a third of the budget, the tail (where tracebacks are) the rest
_MIN_CLIP_BYTES = 256  # below this there is no room for a marker: plain cut
_PRUNE_BATCH = 500  # rows per delete transaction: keeps SQLite's single write lock short
_QUOTA_LOCK_NAMESPACE = 0x71756F74  # "quot": first key of the per-tenant advisory lock (Postgres)

_T = TypeVar("_T")
WriteTx = Callable[[Callable[[AsyncConnection], Awaitable[_T]]], Awaitable[_T]]


@dataclass(frozen=True, kw_only=True)
class RunOutputPolicy:
    """How much run output is kept, and for how long (0 turns a limit off)."""

    max_bytes: int = DEFAULT_RUN_OUTPUT_MAX_BYTES
    quota_bytes: int = DEFAULT_RUN_OUTPUT_QUOTA_BYTES
    retention_s: float = DEFAULT_RUN_OUTPUT_RETENTION_S

    def cap(self) -> int:
        """Return the size one output is cut to (never more than the whole quota)."""
        caps = [c for c in (self.max_bytes, self.quota_bytes) if c > 0]
        return min(caps) if caps else 0


def clip_output(text_: str, max_bytes: int) -> str:
    """Return ``text_`` cut to at most ``max_bytes`` UTF-8 bytes, keeping head and tail around a marker.

    Why both ends: the first lines say what ran, the last ones hold the traceback. ``max_bytes`` 0
    means no cap.
    """
    data = text_.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    if max_bytes <= 0 or len(data) <= max_bytes:
        return data.decode("utf-8")
    if max_bytes < _MIN_CLIP_BYTES:
        return data[:max_bytes].decode("utf-8", "ignore")
    # Size the marker for the largest possible count; the real one is never longer.
    budget = max_bytes - len(_marker(len(data), max_bytes).encode())
    head_bytes = data[: budget // _HEAD_SHARE]
    tail_bytes = data[len(data) - (budget - len(head_bytes)) :]
    head = head_bytes.decode("utf-8", "ignore")  # a split character at either cut is dropped
    tail = tail_bytes.decode("utf-8", "ignore")
    omitted = len(data) - len(head.encode()) - len(tail.encode())
    return head + _marker(omitted, max_bytes) + tail


def _marker(omitted: int, max_bytes: int) -> str:
    return f"\n[... {omitted} bytes of output cut here: run output is capped at {max_bytes} bytes ...]\n"


async def save_run_output(
    conn: AsyncConnection, workspace_id: str, run_id: str, path: str, body: str, *, quota: int
) -> None:
    """Store one (already clipped) output inside the caller's write transaction, within the quota.

    Raises:
        WorkspaceNotFoundError: when the workspace does not exist.
    """
    size = len(body.encode("utf-8"))
    key = document_key(workspace_id=workspace_id, kind=RUN_OUTPUT, run_id=run_id, path=path)
    await make_room(conn, workspace_id=workspace_id, key=key, size=size, quota=quota)
    await upsert_document(
        conn,
        workspace_id=workspace_id,
        kind=RUN_OUTPUT,
        run_id=run_id,
        path=path,
        version_id=None,
        body=body,
        size=size,
        created_at=datetime.now(UTC),
    )


async def make_room(
    conn: AsyncConnection, *, workspace_id: str, key: ColumnElement[bool], size: int, quota: int
) -> int:
    """Delete the tenant's oldest run outputs so that ``size`` more bytes fit in ``quota``.

    Runs inside the caller's write transaction, before it stores the new output. ``key`` selects
    the document being replaced (it does not count). Returns how many outputs were deleted.

    Raises:
        WorkspaceNotFoundError: when the workspace does not exist.
    """
    tenant = await conn.scalar(select(workspaces.c.tenant).where(workspaces.c.id == workspace_id))
    if tenant is None:
        raise WorkspaceNotFoundError(f"no workspace {workspace_id!r}")
    if quota <= 0:
        return 0
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))"),
            {"ns": _QUOTA_LOCK_NAMESPACE, "tenant": tenant},
        )
    return await _trim_tenant(conn, tenant, quota - size, exclude=key)


async def _trim_tenant(
    conn: AsyncConnection, tenant: str, allowed: int, *, exclude: ColumnElement[bool] | None = None
) -> int:
    """Delete the tenant's oldest outputs until they total at most ``allowed`` bytes."""
    d = search_documents
    where: list[ColumnElement[bool]] = [workspaces.c.tenant == tenant, d.c.kind == RUN_OUTPUT]
    if exclude is not None:
        where.append(~exclude)
    owned = d.join(workspaces, workspaces.c.id == d.c.workspace_id)
    total = int(
        await conn.scalar(select(func.coalesce(func.sum(d.c.size), 0)).select_from(owned).where(*where)) or 0
    )
    need = total - allowed
    if need <= 0:
        return 0
    # Oldest first: a row goes while the bytes deleted before it are still short of the need.
    running = func.sum(d.c.size).over(order_by=(d.c.created_at, d.c.id))
    ranked = select(d.c.id, d.c.size, running.label("running")).select_from(owned).where(*where).subquery()
    victims = select(ranked.c.id).where(ranked.c.running - ranked.c.size < need)
    deleted = (await conn.execute(delete(d).where(d.c.id.in_(victims)))).rowcount
    logger.info("run output quota: deleted %d oldest output(s) of tenant %s", deleted, tenant)
    return int(deleted)


async def prune_run_outputs(
    write_tx: WriteTx[Any], policy: RunOutputPolicy, now: datetime | None = None
) -> int:
    """Delete outputs older than the retention, then trim tenants over a (lowered) quota.

    ``write_tx`` runs one write transaction (the store's); deletes go in batches so other writers
    get their turn. Returns how many outputs were deleted.
    """
    deleted = 0
    if policy.retention_s > 0:
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=policy.retention_s)
        d = search_documents
        expired = select(d.c.id).where(d.c.kind == RUN_OUTPUT, d.c.created_at < cutoff).limit(_PRUNE_BATCH)

        async def sweep(conn: AsyncConnection) -> int:
            return int((await conn.execute(delete(d).where(d.c.id.in_(expired)))).rowcount)

        while True:
            batch = await write_tx(sweep)
            deleted += batch
            if batch < _PRUNE_BATCH:
                break
    if policy.quota_bytes > 0:
        deleted += await write_tx(lambda conn: _trim_all(conn, policy.quota_bytes))
    if deleted:
        logger.info("pruned %d run output(s)", deleted)
    return deleted


async def _trim_all(conn: AsyncConnection, quota: int) -> int:
    d = search_documents
    over = (
        select(workspaces.c.tenant)
        .select_from(d.join(workspaces, workspaces.c.id == d.c.workspace_id))
        .where(d.c.kind == RUN_OUTPUT)
        .group_by(workspaces.c.tenant)
        .having(func.sum(d.c.size) > quota)
    )
    deleted = 0
    for tenant in (await conn.execute(over)).scalars().all():
        deleted += await _trim_tenant(conn, tenant, quota)
    return deleted


async def prune_periodically(prune: Callable[[], Awaitable[int]], interval_s: float) -> None:
    """Call ``prune`` now and then every ``interval_s`` seconds until cancelled; failures are logged."""
    while True:
        try:
            await prune()
        except Exception:  # a failed sweep must not end the loop: the next one retries
            logger.exception("pruning run outputs failed")
        await asyncio.sleep(interval_s)
