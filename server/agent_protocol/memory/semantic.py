"""Semantic search over LangGraph's store: items embedded on put, ranked by cosine on search.

``SemanticStore`` wraps the LangGraph store (which keeps items, filters, TTLs and namespaces) and
adds what its own vector index would do, with the vectors in :mod:`.vectors`. A put embeds the
item's indexed fields first (LangGraph's rules: the operator's ``index_fields`` by default, the
put's ``index`` list instead, ``index=False`` none), so an endpoint that fails stores nothing. A
search with a ``query`` asks the store for the newest ``candidates`` items under the prefix that
pass the filter, ranks them by their best field's cosine to the query, and pages the ranking;
items without a vector of the current model follow, newest first, with ``score`` None.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, Item, Op, PutOp, Result, SearchItem, SearchOp, TTLConfig
from langgraph.store.base.embed import get_text_at_path, tokenize_path

from server.agent_protocol.memory.errors import EmbeddingUnavailableError, SemanticSearchOffError
from server.agent_protocol.memory.vectors import (
    Pair,
    Vectors,
    as_rows,
    drop_orphans,
    load_vectors,
    replace_vectors,
)
from server.agent_protocol.storage.store import ProtocolStore

__all__ = ["SemanticStore"]

logger = logging.getLogger(__name__)


def _pair(namespace: tuple[str, ...], key: str) -> Pair:
    return ".".join(namespace), key


class SemanticStore(BaseStore):
    """LangGraph's store plus embeddings of indexed fields and ranked search (async only)."""

    supports_ttl = True

    def __init__(
        self,
        inner: BaseStore,
        tables: ProtocolStore,
        embeddings: Embeddings | None,
        dims: int,
        *,
        fields: list[str],
        candidates: int,
    ) -> None:
        """``tables``: the server's database, where the vectors are (the same one as the store's)."""
        self.inner = inner
        self.ttl_config: TTLConfig | None = inner.ttl_config
        self._tables = tables
        self._embeddings = embeddings
        self._dims = dims
        self._fields = fields
        self._candidates = candidates

    @property
    def semantic(self) -> bool:
        """Whether searches with a ``query`` are ranked (an embedding model is configured)."""
        return self._embeddings is not None

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Not supported: the store is used from the event loop (use ``abatch``)."""
        raise NotImplementedError("SemanticStore is async only: use abatch / aget / asearch / aput")

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Embed puts, run the ops on the store, record vectors, rank searches that have a query."""
        ops = list(ops)
        vectors = await self._embed_puts(ops) if self._embeddings is not None else {}
        ranked: dict[int, SearchOp] = {}
        sent: list[Op] = []
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp) and op.query:
                if self._embeddings is None:
                    raise SemanticSearchOffError(
                        "semantic search is off on this server (AGENTIC_STORE_EMBEDDINGS=off): "
                        "search without 'query' (namespace_prefix and filter)"
                    )
                ranked[i] = op
                op = op._replace(query=None, limit=self._candidates, offset=0)
            sent.append(op)
        query_vectors = await self._embed_queries([op.query or "" for op in ranked.values()])
        results = await self.inner.abatch(sent)
        forgotten = {_pair(op.namespace, op.key): None for op in ops if isinstance(op, PutOp)}
        if forgotten or vectors:
            await self._tables.write(lambda conn: replace_vectors(conn, {**forgotten, **vectors}))
        for (i, op), query_vector in zip(ranked.items(), query_vectors, strict=True):
            results[i] = await self._rank(op, results[i], query_vector)
        return results

    async def _embed_queries(self, queries: list[str]) -> list[np.ndarray]:
        if not queries or self._embeddings is None:
            return []
        try:
            found = await self._embeddings.aembed_documents(queries)
        except EmbeddingUnavailableError:
            raise
        except Exception as exc:
            raise EmbeddingUnavailableError(
                f"embedding the query failed: {type(exc).__name__}: {exc}"
            ) from exc
        return [vec for _, vec in as_rows(("query", v) for v in found)]

    async def _embed_puts(self, ops: list[Op]) -> dict[Pair, Vectors | None]:
        """The vectors of each put's indexed texts (an item put twice in one batch: the last wins)."""
        texts: list[tuple[Pair, str, str]] = []
        for op in ops:
            if not isinstance(op, PutOp) or op.value is None or op.index is False:
                continue
            for path in op.index or self._fields:
                tokens = tokenize_path(path) if path != "$" else "$"
                for n, text in enumerate(get_text_at_path(dict(op.value), tokens)):
                    texts.append((_pair(op.namespace, op.key), f"{path}#{n}", text))
        if not texts:
            return {}
        assert self._embeddings is not None
        try:
            embedded = await self._embeddings.aembed_documents([text for _, _, text in texts])
        except EmbeddingUnavailableError:
            raise
        except Exception as exc:
            raise EmbeddingUnavailableError(
                f"embedding the item failed: {type(exc).__name__}: {exc}"
            ) from exc
        found: dict[Pair, Vectors | None] = {}
        for (pair, field, _), values in zip(texts, embedded, strict=True):
            rows = found.setdefault(pair, [])
            assert rows is not None
            rows.extend(as_rows([(field, values)]))
        return found

    async def _rank(self, op: SearchOp, found: Result, query: np.ndarray) -> list[SearchItem]:
        items = [item for item in found or [] if isinstance(item, Item)]  # type: ignore[union-attr]
        pairs = [_pair(item.namespace, item.key) for item in items]
        stored = await self._tables.read(lambda conn: load_vectors(conn, pairs, self._dims))
        scored: list[tuple[float, int]] = []
        unscored: list[int] = []
        for n, pair in enumerate(pairs):
            matrix = stored.get(pair)
            if matrix is None:
                unscored.append(n)
            else:
                scored.append((float(np.max(matrix @ query)), n))
        scored.sort(key=lambda s: (-s[0], s[1]))  # best first; ties keep the store's (newest first)
        order: list[tuple[float | None, int]] = [*scored, *((None, n) for n in unscored)]
        page = order[op.offset : op.offset + op.limit]
        return [_with_score(items[n], score) for score, n in page]

    async def sweep(self) -> int:
        """Delete expired items (LangGraph's sweep), then their vectors; returns items deleted."""
        sweep_ttl: Any = getattr(self.inner, "sweep_ttl", None)
        deleted = int(await sweep_ttl()) if sweep_ttl is not None else 0
        orphans = await self._tables.write(drop_orphans)
        if deleted or orphans:
            logger.info("store sweep: %d expired items, %d vectors deleted", deleted, orphans)
        return deleted

    async def run_sweeper(self, interval_s: float) -> None:
        """Sweep every ``interval_s`` until cancelled; a failed sweep is logged and retried next time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep()
            except Exception:
                logger.exception("store TTL sweep failed")


def _with_score(item: Item, score: float | None) -> SearchItem:
    return SearchItem(
        namespace=item.namespace,
        key=item.key,
        value=item.value,
        created_at=item.created_at,
        updated_at=item.updated_at,
        score=score,
    )
