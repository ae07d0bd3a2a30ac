"""The memory store in process: the embedded model offline, the tenant view's storage, semantic search off."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.agent_protocol.memory.backends import open_memory_store
from server.agent_protocol.memory.config import LOCAL_DIMS, MemoryStoreSettings
from server.agent_protocol.memory.embeddings import LocalEmbeddings, embeddings_from_settings
from server.agent_protocol.memory.errors import SemanticSearchOffError
from server.agent_protocol.memory.semantic import SemanticStore
from server.agent_protocol.memory.tenant import TenantMemoryStore, tenant_label
from server.agent_protocol.storage.store import ProtocolStore, async_url

MEMORIES = {
    "lang": {"text": "The user prefers TypeScript for code"},
    "food": {"text": "Favourite food is pizza"},
    "theme": {"text": "Prefers dark mode in editors"},
}


@pytest.fixture
async def tables(tmp_path: Path) -> AsyncIterator[ProtocolStore]:
    store = ProtocolStore.from_url(async_url(None, tmp_path))
    await store.setup()
    try:
        yield store
    finally:
        await store.close()


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network used: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_embedded_model_loads_from_its_wheel_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    model = LocalEmbeddings()
    vectors = np.asarray(model.embed_documents([m["text"] for m in MEMORIES.values()]))
    assert vectors.shape == (3, LOCAL_DIMS)
    query = np.asarray(model.embed_query("which programming language does the user like"))
    scores = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    assert int(np.argmax(scores)) == 0, scores


def test_the_local_model_is_the_default_and_off_turns_it_off() -> None:
    chosen = embeddings_from_settings(MemoryStoreSettings())
    assert chosen is not None and isinstance(chosen[0], LocalEmbeddings) and chosen[1] == LOCAL_DIMS
    assert embeddings_from_settings(MemoryStoreSettings(embeddings="off")) is None
    endpoint = MemoryStoreSettings(embeddings_url="http://127.0.0.1:9/v1")
    assert endpoint.embeddings == "endpoint"
    with pytest.raises(ValueError, match="AGENTIC_STORE_EMBEDDINGS_URL"):
        MemoryStoreSettings(embeddings="endpoint")


async def test_the_default_store_ranks_with_the_local_model_under_the_tenants_label(
    tables: ProtocolStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_network(monkeypatch)
    settings = MemoryStoreSettings()
    async with open_memory_store(settings, None, tables) as memory:
        view = TenantMemoryStore(memory, "acme.corp", settings)
        for key, value in MEMORIES.items():
            await view.aput(("memories",), key, value)
        found = await view.asearch(("memories",), query="which programming language does the user like")
        assert [i.key for i in found][0] == "lang"
        assert found[0].namespace == ("memories",) and found[0].score is not None
        label = tenant_label("acme.corp")
        assert label == "tenant:acme%2Ecorp"
        raw = await memory.inner.asearch((label, "memories"), limit=10)
        assert sorted(i.key for i in raw) == sorted(MEMORIES)
        assert await TenantMemoryStore(memory, "acme", settings).asearch(("memories",)) == []


async def test_with_semantic_search_off_a_query_is_refused(tables: ProtocolStore) -> None:
    settings = MemoryStoreSettings(embeddings="off")
    async with open_memory_store(settings, None, tables) as memory:
        assert isinstance(memory, SemanticStore) and not memory.semantic
        view = TenantMemoryStore(memory, "t", settings)
        await view.aput(("m",), "k", {"text": "x"})
        assert [i.key for i in await view.asearch(("m",))] == ["k"]
        with pytest.raises(SemanticSearchOffError, match="search without 'query'"):
            await view.asearch(("m",), query="x")


async def test_sqlite_store_waits_for_a_busy_file_off_the_event_loop(tmp_path: Path) -> None:
    """A put while another writer holds the file runs on the store's thread; the loop keeps turning."""
    import asyncio
    import sqlite3
    import time

    from server.agent_protocol.memory.inline_sqlite import InlineSqliteStore, open_inline_sqlite_store

    path = tmp_path / "m.db"

    def hold_write_lock(seconds: float) -> None:  # another process's writer, as SQLite sees it
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    async with open_inline_sqlite_store(path, {"refresh_on_read": True}) as store:
        assert isinstance(store, InlineSqliteStore)
        await store.aput(("prefs",), "lang", {"value": "python"})  # free: on the loop
        assert store.offloaded == 0
        holder = asyncio.ensure_future(asyncio.to_thread(hold_write_lock, 0.5))
        await asyncio.sleep(0.1)
        put = asyncio.ensure_future(store.aput(("prefs",), "lang", {"value": "typescript"}))
        ticks = 0
        while not put.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await put
        await holder
        assert ticks >= 10, "the event loop stood still while the file was busy"
        assert store.offloaded == 1
        found = await store.asearch(("prefs",))  # the loop's connection was left clean: back on the loop
        assert [(item.key, item.value) for item in found] == [("lang", {"value": "typescript"})]
        assert store.offloaded == 1
