"""Conformance: full-text search (FTS5 on SQLite, tsvector on Postgres) through the same API."""

from __future__ import annotations

import pytest

from workspace import InvalidPathError, SqlVersionStore, Workspace, WorkspaceNotFoundError


async def test_finds_files_by_content_and_path(store: SqlVersionStore, ws: Workspace) -> None:
    v = await store.write(ws.id, "src/calc.py", "def compute_total(items):\n    return sum(items)\n")
    await store.write(ws.id, "utils/helpers.py", "x = 1\n")
    hits = await store.search(ws.id, "compute_total")
    assert [(h.kind, h.path, h.version_id, h.run_id) for h in hits] == [("file", "src/calc.py", v.id, None)]
    assert "**compute**_**total**" in hits[0].snippet and hits[0].rank > 0
    assert [h.path for h in await store.search(ws.id, "helpers")] == ["utils/helpers.py"]


async def test_only_the_latest_version_is_searched(store: SqlVersionStore, ws: Workspace) -> None:
    v1 = await store.write(ws.id, "a.txt", "alpha content\n")
    await store.write(ws.id, "a.txt", "beta content\n")
    assert await store.search(ws.id, "alpha") == []
    assert [h.path for h in await store.search(ws.id, "beta")] == ["a.txt"]
    v3 = await store.rollback(ws.id, "a.txt", v1.id)
    assert [h.version_id for h in await store.search(ws.id, "alpha")] == [v3.id]
    assert await store.search(ws.id, "beta") == []


async def test_run_outputs_are_searchable_and_replaceable(store: SqlVersionStore, ws: Workspace) -> None:
    await store.index_run_output(ws.id, "run-1", "stderr", "ZeroDivisionError: division by zero\n")
    await store.index_run_output(ws.id, "run-2", "stderr", "ZeroDivisionError again\x00\n")
    hits = await store.search(ws.id, "zerodivisionerror")
    assert sorted((h.kind, h.run_id, h.path, h.version_id) for h in hits) == [
        ("run_output", "run-1", "stderr", None),
        ("run_output", "run-2", "stderr", None),
    ]
    await store.index_run_output(ws.id, "run-1", "stderr", "all good now\n")
    assert [h.run_id for h in await store.search(ws.id, "ZeroDivisionError")] == ["run-2"]
    assert [h.run_id for h in await store.search(ws.id, "good")] == ["run-1"]


async def test_all_terms_first_then_any_term(store: SqlVersionStore, ws: Workspace) -> None:
    await store.write(ws.id, "both.txt", "apple banana\n")
    await store.write(ws.id, "one.txt", "apple only\n")
    assert [h.path for h in await store.search(ws.id, "banana apple")] == ["both.txt"]
    assert {h.path for h in await store.search(ws.id, "apple cherry")} == {"both.txt", "one.txt"}
    assert await store.search(ws.id, "cherry durian") == []


async def test_better_matches_rank_first(store: SqlVersionStore, ws: Workspace) -> None:
    await store.write(ws.id, "weak.txt", "error " + "filler words here " * 30)
    await store.write(ws.id, "strong.txt", "error error error in the parser\n")
    hits = await store.search(ws.id, "error")
    assert [h.path for h in hits] == ["strong.txt", "weak.txt"]
    assert hits[0].rank > hits[1].rank


async def test_punctuation_splits_terms_like_the_index(store: SqlVersionStore, ws: Workspace) -> None:
    await store.write(ws.id, "m.py", "import numpy as np\nx = np.array([1, 2])\nos.path.join('a')\n")
    for query in ("np.array", "array", "join", "os.path", "(array)"):
        hits = await store.search(ws.id, query)
        assert [h.path for h in hits] == ["m.py"], query
    assert "np.**array**" in (await store.search(ws.id, "array"))[0].snippet


async def test_unicode_terms(store: SqlVersionStore, ws: Workspace) -> None:
    await store.write(ws.id, "menu.md", "Café crème, 3 €\n")
    hits = await store.search(ws.id, "crème")
    assert [h.path for h in hits] == ["menu.md"] and "**crème**" in hits[0].snippet


async def test_search_is_scoped_limited_and_safe(store: SqlVersionStore, ws: Workspace) -> None:
    other = await store.create_workspace("other")
    await store.write(other.id, "secret.txt", "needle\n")
    assert await store.search(ws.id, "needle") == []
    for i in range(5):
        await store.write(ws.id, f"n{i}.txt", "needle\n")
    assert len(await store.search(ws.id, "needle", limit=3)) == 3
    for query in ("", "   ", "!!!", '"', "' OR 1=1 --", "a & | ! ( ) : *", "NEAR(needle)"):
        hits = await store.search(ws.id, query)  # no query-syntax error reaches the caller
        assert all(h.path.startswith("n") for h in hits)
    with pytest.raises(WorkspaceNotFoundError):
        await store.search("nope", "needle")


async def test_index_run_output_validates(store: SqlVersionStore, ws: Workspace) -> None:
    with pytest.raises(WorkspaceNotFoundError):
        await store.index_run_output("nope", "r", "stdout", "x")
    with pytest.raises(InvalidPathError):
        await store.index_run_output(ws.id, "r", "../stdout", "x")


async def test_large_documents_are_indexed(store: SqlVersionStore, ws: Workspace) -> None:
    # ~1 MB of distinct words: Postgres caps a tsvector at 1 MB, so only a prefix is indexed there.
    body = " ".join(f"w{i:06d}" for i in range(120_000))
    assert len(body.encode()) < store.max_file_bytes
    await store.write(ws.id, "words.txt", body)
    assert [h.path for h in await store.search(ws.id, "w000042")] == ["words.txt"]
