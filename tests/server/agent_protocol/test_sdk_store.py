"""The long-term memory store through ``langgraph-sdk``'s ``client.store``, on SQLite and Postgres.

A real server process per database, two tenants, semantic search against a real embeddings server
on loopback (deterministic topic vectors, so the ranking is checked, not assumed), a fast TTL sweep.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.agent_protocol.support import API_KEY, OTHER_KEY, ServerProcess, fresh_database
from tests.support.topic_embeddings import DIMS, TopicEmbeddings

MAX_VALUE_BYTES = 2048
EMBEDDINGS_KEY = "emb-" + uuid.uuid4().hex


@dataclass
class StoreServer:
    """The server, its embeddings endpoint, and a way to count the rows LangGraph's store kept."""

    server: ServerProcess
    embeddings: TopicEmbeddings
    database_url: str | None

    def stored_rows(self, key: str) -> int:
        """Rows of ``key`` in the ``store`` table (expired or not), read from the database itself."""
        if self.database_url is None:
            with sqlite3.connect(self.server.data_dir / "agent_protocol.db") as conn:
                return int(conn.execute("SELECT count(*) FROM store WHERE key = ?", (key,)).fetchone()[0])
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM store WHERE key = %s", (key,)).fetchone()
            return int(row[0]) if row else 0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreServer]:
    with TopicEmbeddings() as embeddings:
        env = {
            "AGENTIC_GRAPH_REF": "tests.server.agent_protocol.sample_graphs:graph",
            "AGENTIC_API_KEYS": f"{API_KEY},other:{OTHER_KEY}",
            "AGENTIC_STORE_EMBEDDINGS_URL": embeddings.url,
            "AGENTIC_STORE_EMBEDDINGS_MODEL": "topic-embed",
            "AGENTIC_STORE_EMBEDDINGS_DIMS": str(DIMS),
            "AGENTIC_STORE_EMBEDDINGS_API_KEY": EMBEDDINGS_KEY,
            "AGENTIC_STORE_TTL_SWEEP_MINUTES": "0.01",
            "AGENTIC_STORE_MAX_VALUE_BYTES": str(MAX_VALUE_BYTES),
        }
        url = None
        if request.param == "postgres":
            url = fresh_database(request.getfixturevalue("postgres_url"), prefix="store_")
            env["AGENTIC_DATABASE_URL"] = url
        with ServerProcess(tmp_path_factory.mktemp("store-" + request.param), env) as server:
            yield StoreServer(server, embeddings, url)


@pytest.fixture
async def client(store_server: StoreServer) -> AsyncIterator[LangGraphClient]:
    c = get_client(url=store_server.server.url, api_key=API_KEY)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def other(store_server: StoreServer) -> AsyncIterator[LangGraphClient]:
    c = get_client(url=store_server.server.url, api_key=OTHER_KEY)
    try:
        yield c
    finally:
        await c.aclose()


def _ns(*labels: str) -> list[str]:
    """A namespace unique to the test (the module's server is shared)."""
    return ["t" + uuid.uuid4().hex[:8], *labels]


async def test_put_get_overwrite_delete(client: LangGraphClient) -> None:
    ns = _ns("users", "u1")
    assert await client.store.get_item(ns, "prefs") is None
    await client.store.put_item(ns, "prefs", {"language": "TypeScript"})
    item = await client.store.get_item(ns, "prefs")
    assert item is not None
    assert item["namespace"] == ns and item["key"] == "prefs" and item["value"] == {"language": "TypeScript"}
    assert item["created_at"] and item["updated_at"]
    await client.store.put_item(ns, "prefs", {"language": "Python"})
    again = await client.store.get_item(ns, "prefs")
    assert again is not None and again["value"] == {"language": "Python"}
    await client.store.delete_item(ns, "prefs")
    assert await client.store.get_item(ns, "prefs") is None
    await client.store.delete_item(ns, "prefs")  # deleting nothing is no error


async def test_search_by_prefix_filter_and_pages(client: LangGraphClient) -> None:
    root = _ns()
    for n in range(5):
        kind = "note" if n % 2 == 0 else "todo"
        await client.store.put_item([*root, "docs"], f"d{n}", {"kind": kind, "n": n}, index=False)
    await client.store.put_item([*root, "elsewhere"], "x", {"kind": "note", "n": 9}, index=False)

    found = await client.store.search_items([*root, "docs"], limit=10)
    assert sorted(i["key"] for i in found["items"]) == [f"d{n}" for n in range(5)]
    notes = await client.store.search_items([*root, "docs"], filter={"kind": "note"})
    assert sorted(i["key"] for i in notes["items"]) == ["d0", "d2", "d4"]
    big = await client.store.search_items([*root], filter={"n": {"$gte": 3}})
    assert sorted(i["key"] for i in big["items"]) == ["d3", "d4", "x"]
    first = await client.store.search_items([*root, "docs"], limit=2, offset=0)
    rest = await client.store.search_items([*root, "docs"], limit=10, offset=2)
    keys = [i["key"] for i in first["items"] + rest["items"]]
    assert len(first["items"]) == 2 and sorted(keys) == [f"d{n}" for n in range(5)]
    assert all(i["score"] is None for i in found["items"])  # no query: listing, not ranking


async def test_list_namespaces_prefix_suffix_depth(client: LangGraphClient) -> None:
    root = _ns()
    for path in (["users", "a", "prefs"], ["users", "b", "prefs"], ["users", "b", "notes"], ["docs"]):
        await client.store.put_item([*root, *path], "k", {"v": 1}, index=False)
    everything = (await client.store.list_namespaces(prefix=root))["namespaces"]
    assert sorted(everything) == sorted(
        [
            [*root, "users", "a", "prefs"],
            [*root, "users", "b", "prefs"],
            [*root, "users", "b", "notes"],
            [*root, "docs"],
        ]
    )
    prefs = (await client.store.list_namespaces(prefix=root, suffix=["prefs"]))["namespaces"]
    assert sorted(prefs) == [[*root, "users", "a", "prefs"], [*root, "users", "b", "prefs"]]
    shallow = (await client.store.list_namespaces(prefix=root, max_depth=2))["namespaces"]
    assert sorted(shallow) == [[*root, "docs"], [*root, "users"]]
    page = (await client.store.list_namespaces(prefix=root, limit=2, offset=1))["namespaces"]
    assert len(page) == 2 and all(ns in everything for ns in page)


async def test_tenants_never_see_each_others_items(client: LangGraphClient, other: LangGraphClient) -> None:
    ns = _ns("secrets")
    await client.store.put_item(ns, "k", {"owner": "default"})
    assert await other.store.get_item(ns, "k") is None
    assert (await other.store.search_items([ns[0]]))["items"] == []
    assert (await other.store.search_items([ns[0]], query="programming language"))["items"] == []
    assert ns not in (await other.store.list_namespaces())["namespaces"]
    assert (await other.store.list_namespaces(prefix=[ns[0]]))["namespaces"] == []
    await other.store.delete_item(ns, "k")  # deletes its own (absent) item, not the other tenant's
    await other.store.put_item(ns, "k", {"owner": "other"})
    mine = await client.store.get_item(ns, "k")
    theirs = await other.store.get_item(ns, "k")
    assert mine is not None and mine["value"] == {"owner": "default"}
    assert theirs is not None and theirs["value"] == {"owner": "other"}
    assert ns in (await client.store.list_namespaces())["namespaces"]
    # A client cannot spell a tenant's label to reach it.
    async with httpx.AsyncClient(base_url=client.http.client.base_url) as raw:
        r = await raw.post(
            "/store/items/search",
            json={"namespace_prefix": ["tenant:default"]},
            headers={"x-api-key": OTHER_KEY},
        )
    assert r.status_code == 422 and "reserved" in r.json()["error"]["message"]


async def test_semantic_search_ranks_by_the_query(client: LangGraphClient, store_server: StoreServer) -> None:
    ns = _ns("memories")
    await client.store.put_item(ns, "lang", {"text": "prefers TypeScript for programming"})
    await client.store.put_item(ns, "food", {"text": "likes pizza and pasta for dinner"})
    await client.store.put_item(ns, "home", {"text": "lives in Berlin"})
    await client.store.put_item(ns, "raw", {"text": "TypeScript TypeScript code"}, index=False)
    await client.store.put_item(
        ns, "titled", {"title": "pizza", "body": "typescript code program"}, index=["title"]
    )

    ranked = (await client.store.search_items(ns, query="which programming language", limit=10))["items"]
    keys = [i["key"] for i in ranked]
    assert keys[0] == "lang", ranked
    assert ranked[0]["score"] > ranked[1]["score"]
    assert keys[-1] == "raw" and ranked[-1]["score"] is None  # not indexed: after every scored item
    food = (await client.store.search_items(ns, query="what food for lunch", limit=2))["items"]
    assert {i["key"] for i in food} == {"food", "titled"}  # "titled" was indexed by its title only
    home = (await client.store.search_items(ns, query="which city", limit=1, offset=0))["items"]
    assert [i["key"] for i in home] == ["home"]
    second = (await client.store.search_items(ns, query="which programming language", limit=1, offset=1))[
        "items"
    ]
    assert [i["key"] for i in second] == [keys[1]]
    filtered = (await client.store.search_items(ns, query="programming", filter={"text": "lives in Berlin"}))[
        "items"
    ]
    assert [i["key"] for i in filtered] == ["home"]

    sent = store_server.embeddings.requests
    assert sent and {r["model"] for r in sent} == {"topic-embed"}  # the operator's model, never the client's
    assert set(store_server.embeddings.authorizations) == {f"Bearer {EMBEDDINGS_KEY}"}


async def test_an_embedding_endpoint_that_fails_stores_nothing(
    client: LangGraphClient, store_server: StoreServer
) -> None:
    ns = _ns("memories")
    store_server.embeddings.fail = True
    try:
        async with httpx.AsyncClient(base_url=store_server.server.url) as raw:
            r = await raw.put(
                "/store/items",
                json={"namespace": ns, "key": "k", "value": {"text": "x"}},
                headers={"x-api-key": API_KEY},
            )
            assert r.status_code == 503 and "embedding" in r.json()["error"]["message"]
            r = await raw.post(
                "/store/items/search",
                json={"namespace_prefix": ns, "query": "x"},
                headers={"x-api-key": API_KEY},
            )
            assert r.status_code == 503
    finally:
        store_server.embeddings.fail = False
    assert await client.store.get_item(ns, "k") is None


async def test_ttl_items_expire_and_are_swept(client: LangGraphClient, store_server: StoreServer) -> None:
    ns = _ns("short")
    key = "ttl-" + uuid.uuid4().hex
    ttl_seconds = 2.0
    put_at = time.monotonic()
    await client.store.put_item(ns, key, {"v": 1}, ttl=ttl_seconds / 60, index=False)
    rows = store_server.stored_rows(key)
    # Stored in the database itself; on a slow machine the sweeper may already have taken it.
    assert rows == 1 or time.monotonic() - put_at >= ttl_seconds
    item = await client.store.get_item(ns, key)
    assert item is not None or time.monotonic() - put_at >= ttl_seconds
    await client.store.put_item(ns, "stays", {"v": 2}, index=False)
    for _ in range(100):  # the sweeper runs every 0.6 s
        if store_server.stored_rows(key) == 0:
            break
        await asyncio.sleep(0.1)
    assert store_server.stored_rows(key) == 0
    assert await client.store.get_item(ns, key) is None
    assert await client.store.get_item(ns, "stays") is not None


_BAD: list[tuple[str, str, dict[str, Any], str]] = [
    ("put", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}, "'.'"),
    ("put", "/store/items", {"namespace": ["a", ""], "key": "k", "value": {}}, "non-empty"),
    ("put", "/store/items", {"namespace": [], "key": "k", "value": {}}, "at least one label"),
    ("put", "/store/items", {"namespace": ["tenant:other"], "key": "k", "value": {}}, "reserved"),
    ("put", "/store/items", {"namespace": ["langgraph"], "key": "k", "value": {}}, "langgraph"),
    ("put", "/store/items", {"namespace": ["a"] * 9, "key": "k", "value": {}}, "at most 8"),
    ("put", "/store/items", {"namespace": ["a" * 129], "key": "k", "value": {}}, "at most 128"),
    ("put", "/store/items", {"namespace": ["a"], "key": "", "value": {}}, "key"),
    ("put", "/store/items", {"namespace": ["a"], "key": "k", "value": [1]}, "dictionary"),
    ("put", "/store/items", {"namespace": ["a"], "key": "k", "value": "text"}, "dictionary"),
    ("put", "/store/items", {"namespace": ["a"], "key": "k", "value": {"x": "y" * MAX_VALUE_BYTES}}, "bytes"),
    ("put", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": 0}, "ttl"),
    ("put", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": -5}, "ttl"),
    ("put", "/store/items", {"namespace": ["a"], "key": "k", "value": {"n": 2**70}}, "64 bits"),
    ("post", "/store/items/search", {"namespace_prefix": ["a"], "filter": {"a;b": 1}}, "filter field"),
    (
        "post",
        "/store/items/search",
        {"namespace_prefix": ["a"], "filter": {"n": {"$regex": "x"}}},
        "operator",
    ),
    ("post", "/store/items/search", {"namespace_prefix": ["a"], "limit": 0}, "limit"),
    ("post", "/store/items/search", {"namespace_prefix": ["a"], "limit": 5000}, "limit"),
    ("post", "/store/namespaces", {"max_depth": 0}, "max_depth"),
    ("post", "/store/namespaces", {"suffix": ["x.y"]}, "'.'"),
]


@pytest.mark.parametrize(("method", "path", "body", "says"), _BAD, ids=[f"{m}-{s}" for m, _, _, s in _BAD])
async def test_bad_input_is_422_with_what_to_fix_and_stores_nothing(
    client: LangGraphClient,
    store_server: StoreServer,
    method: str,
    path: str,
    body: dict[str, Any],
    says: str,
) -> None:
    before = (await client.store.list_namespaces(limit=1000))["namespaces"]
    async with httpx.AsyncClient(base_url=store_server.server.url) as raw:
        r = await raw.request(method.upper(), path, json=body, headers={"x-api-key": API_KEY})
    assert r.status_code == 422, r.text
    assert says in r.json()["error"]["message"], r.text
    assert (await client.store.list_namespaces(limit=1000))["namespaces"] == before
    assert await client.store.get_item(["a"], "k") is None


async def test_get_without_a_key_or_with_a_bad_namespace_is_refused(store_server: StoreServer) -> None:
    async with httpx.AsyncClient(base_url=store_server.server.url, headers={"x-api-key": API_KEY}) as raw:
        assert (await raw.get("/store/items", params={"namespace": "a"})).status_code == 422
        r = await raw.get("/store/items", params={"namespace": "a..b", "key": "k"})
        assert r.status_code == 422 and "non-empty" in r.json()["error"]["message"]
        assert (await raw.get("/store/items", params={"namespace": "a", "key": "k"})).json() is None
