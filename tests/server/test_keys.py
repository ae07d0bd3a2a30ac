"""Hashed API keys in the database, on SQLite and a real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.agent_protocol.storage import async_url
from server.keys import KeyRing, KeyStore, hash_key


@pytest.fixture(params=["sqlite", "postgres"])
async def keys(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    store = KeyStore.from_url(async_url(url, tmp_path))
    await store.setup()
    await store.setup()
    try:
        yield store
    finally:
        await store.close()


async def test_create_lookup_revoke(keys: KeyStore) -> None:
    info, key = await keys.create_key("gamma")
    ring = KeyRing([("env", "env-key-123456")], keys)
    assert await ring.enabled()
    principal = await ring.authenticate(key)
    assert principal is not None and (principal.tenant, principal.key_id) == ("gamma", info.key_id)
    env = await ring.authenticate("env-key-123456")
    assert env is not None and env.tenant == "env" and "env-key" not in env.key_id
    assert await ring.authenticate(key + "x") is None
    assert info.key_id in [k.key_id for k in await keys.list_keys("gamma")]
    assert hash_key(key) != key and len(hash_key(key)) == 64
    assert await keys.revoke_keys("gamma", info.key_id) == 1
    assert await ring.authenticate(key) is None
    assert await keys.revoke_keys("gamma", info.key_id) == 0
