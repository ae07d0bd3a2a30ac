"""Conformance: a path is never both a file and a directory, and versions beyond 64 bits are not found.

A workspace holding ``a`` and ``a/b`` cannot be materialised into a sandbox, so every later run in it
would fail; the store refuses the second write in either direction, also when both race (SQLite and
Postgres through the ``store`` fixture).
"""

from __future__ import annotations

import asyncio

import pytest

from workspace import PathConflictError, SqlVersionStore, VersionNotFoundError, Workspace
from workspace.sql import SqlVersionStore as _Store

from .conftest import StoreFactory


@pytest.mark.parametrize(
    ("first", "second"),
    [("a", "a/b"), ("a/b", "a"), ("a", "a/b/c/d"), ("a/b/c/d", "a/b"), ("x/a", "x/a/b"), ("x/a/b", "x/a")],
)
async def test_file_and_directory_of_one_name_are_refused(
    store: SqlVersionStore, ws: Workspace, first: str, second: str
) -> None:
    kept = await store.write(ws.id, first, "kept\n")
    with pytest.raises(PathConflictError) as info:
        await store.write(ws.id, second, "refused\n")
    assert repr(first) in str(info.value) and repr(second) in str(info.value)
    assert [f.path for f in await store.list_files(ws.id)] == [first]
    assert await store.read(ws.id, first) == kept
    assert len(await store.history(ws.id, first)) == 1


async def test_similar_names_are_not_conflicts(store: SqlVersionStore, ws: Workspace) -> None:
    # Prefixes that are not whole segments, LIKE wildcards and the character after '/' all differ.
    for path in ("a", "ab", "a.b", "a_/c", "a%/c", "a0", "a-b/c", "b/a"):
        await store.write(ws.id, path, "x\n")
    await store.write(ws.id, "a", "again\n")  # an existing file's new version is never a conflict
    assert len(await store.list_files(ws.id)) == 8


async def test_conflicts_are_per_workspace(store: SqlVersionStore, ws: Workspace) -> None:
    other = await store.create_workspace("other")
    await store.write(ws.id, "a", "x\n")
    await store.write(other.id, "a/b", "x\n")
    assert [f.path for f in await store.list_files(other.id)] == ["a/b"]


async def test_racing_clashing_paths_store_only_one(open_stores: StoreFactory, ws: Workspace) -> None:
    # Separate stores (separate pools, as separate processes would be) write 'd' and 'd/f' at once.
    stores: list[_Store] = [open_stores() for _ in range(6)]
    for round_ in range(5):
        base = f"r{round_}"
        paths = [base, f"{base}/f", base, f"{base}/g/h", f"{base}/f", base]
        results = await asyncio.gather(
            *(s.write(ws.id, p, "x\n") for s, p in zip(stores, paths, strict=True)), return_exceptions=True
        )
        assert all(isinstance(r, PathConflictError) or not isinstance(r, BaseException) for r in results)
        names = [f.path for f in await stores[0].list_files(ws.id) if f.path.split("/")[0] == base]
        assert names == [base] or all(n.startswith(base + "/") for n in names), names


async def test_version_numbers_past_64_bits_are_not_found(store: SqlVersionStore, ws: Workspace) -> None:
    await store.write(ws.id, "a.py", "x\n")
    for spec in (2**63, 2**70, -(2**70)):
        with pytest.raises(VersionNotFoundError):
            await store.read(ws.id, "a.py", spec)
        with pytest.raises(VersionNotFoundError):
            await store.diff(ws.id, "a.py", 1, spec)
        with pytest.raises(VersionNotFoundError):
            await store.rollback(ws.id, "a.py", spec)
    with pytest.raises(VersionNotFoundError):
        await store.read(ws.id, "a.py", "²")  # not an ASCII digit: an id, and no version has it
    assert len(await store.history(ws.id, "a.py")) == 1
