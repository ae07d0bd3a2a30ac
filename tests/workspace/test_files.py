"""Conformance: files and versions (runs against SQLite and Postgres through the ``store`` fixture)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workspace import (
    BinaryContentError,
    FileNotFoundInWorkspaceError,
    FileTooLargeError,
    InvalidPathError,
    SqlVersionStore,
    VersionNotFoundError,
    Workspace,
    WorkspaceNotFoundError,
)


async def test_write_then_read_returns_the_same_version(store: SqlVersionStore, ws: Workspace) -> None:
    before = datetime.now(UTC)
    content = "print('héllo')\n"
    v = await store.write(ws.id, "src/main.py", content, author="agent", message="first")
    assert v.number == 1 and v.parent_id is None and v.diff == ""
    assert v.path == "src/main.py" and v.workspace_id == ws.id
    assert v.author == "agent" and v.message == "first"
    assert v.size == len(content.encode()) == 16
    assert v.sha256 == hashlib.sha256(content.encode()).hexdigest()
    assert v.created_at.tzinfo is not None and before - timedelta(seconds=1) <= v.created_at
    assert await store.read(ws.id, "src/main.py") == v
    assert await store.read(ws.id, "src/main.py", v.id) == v
    assert await store.read(ws.id, "src/main.py", 1) == v


async def test_second_write_links_parent_and_stores_diff(store: SqlVersionStore, ws: Workspace) -> None:
    v1 = await store.write(ws.id, "a.py", "x = 1\ny = 2\n")
    v2 = await store.write(ws.id, "a.py", "x = 1\ny = 3\n", message="bump")
    assert v2.number == 2 and v2.parent_id == v1.id
    assert v2.diff.startswith("--- a/a.py\n+++ b/a.py\n")
    assert "-y = 2\n" in v2.diff and "+y = 3\n" in v2.diff
    assert (await store.read(ws.id, "a.py")).id == v2.id
    assert await store.read(ws.id, "a.py", 1) == v1  # old versions are unchanged


async def test_identical_content_still_creates_a_version(store: SqlVersionStore, ws: Workspace) -> None:
    await store.write(ws.id, "a.txt", "same\n")
    v2 = await store.write(ws.id, "a.txt", "same\n", message="again")
    assert v2.number == 2 and v2.diff == "" and v2.message == "again"


async def test_paths_are_normalised(store: SqlVersionStore, ws: Workspace) -> None:
    v = await store.write(ws.id, "./a//b/./c.py", "1")
    assert v.path == "a/b/c.py"
    assert (await store.read(ws.id, "a/b/c.py")).id == v.id
    assert (await store.read(ws.id, "a/b//c.py/")).id == v.id


@pytest.mark.parametrize(
    "path",
    ["../x", "a/../../x", "a/..", "/etc/passwd", "a\x00b", "", ".", "./", "a\\b", "a\nb"]
    + ["x" * 513, "a/" + "y" * 256],
)
async def test_invalid_paths_are_refused_and_nothing_is_stored(
    store: SqlVersionStore, ws: Workspace, path: str
) -> None:
    with pytest.raises(InvalidPathError):
        await store.write(ws.id, path, "data")
    with pytest.raises(InvalidPathError):
        await store.read(ws.id, path)
    assert await store.list_files(ws.id) == []


async def test_longest_allowed_path_is_accepted(store: SqlVersionStore, ws: Workspace) -> None:
    path = "/".join(["d" * 255, "e" * 255])  # 511 characters
    assert (await store.write(ws.id, path, "ok")).path == path


@pytest.mark.parametrize("content", ["a\x00b", "\ud800 lone surrogate"])
async def test_binary_content_is_refused(store: SqlVersionStore, ws: Workspace, content: str) -> None:
    with pytest.raises(BinaryContentError):
        await store.write(ws.id, "bin", content)
    assert await store.list_files(ws.id) == []


async def test_oversize_content_is_refused_with_the_cap(open_stores: object, ws: Workspace) -> None:
    small = open_stores(max_file_bytes=10)  # type: ignore[operator]
    assert (await small.write(ws.id, "ok", "é" * 5)).size == 10  # exactly the cap, in UTF-8 bytes
    with pytest.raises(FileTooLargeError, match="maximum is 10 bytes"):
        await small.write(ws.id, "big", "é" * 5 + "x")
    with pytest.raises(FileNotFoundInWorkspaceError):
        await small.read(ws.id, "big")


async def test_unknown_workspace(store: SqlVersionStore) -> None:
    with pytest.raises(WorkspaceNotFoundError):
        await store.write("nope", "a", "x")
    with pytest.raises(WorkspaceNotFoundError):
        await store.read("nope", "a")
    with pytest.raises(WorkspaceNotFoundError):
        await store.read("nope", "a", 1)
    with pytest.raises(WorkspaceNotFoundError):
        await store.list_files("nope")
    with pytest.raises(WorkspaceNotFoundError):
        await store.history("nope", "a")
    with pytest.raises(WorkspaceNotFoundError):
        await store.rollback("nope", "a", 1)
    with pytest.raises(WorkspaceNotFoundError):
        await store.diff("nope", "a", 1, 2)


async def test_unknown_file_and_version(store: SqlVersionStore, ws: Workspace) -> None:
    with pytest.raises(FileNotFoundInWorkspaceError):
        await store.read(ws.id, "missing.py")
    with pytest.raises(FileNotFoundInWorkspaceError):
        await store.history(ws.id, "missing.py")
    other = await store.write(ws.id, "other.py", "o")
    v1 = await store.write(ws.id, "a.py", "1")
    for spec in (2, "2", "v2", 0, -1, "0123456789abcdef0123456789abcdef", other.id, True):
        with pytest.raises(VersionNotFoundError):
            await store.read(ws.id, "a.py", spec)
    assert await store.read(ws.id, "a.py", "v1") == v1
    assert await store.read(ws.id, "a.py", "1") == v1
    with pytest.raises(VersionNotFoundError):
        await store.diff(ws.id, "a.py", 1, 7)


async def test_list_files_shows_latest_per_path(store: SqlVersionStore, ws: Workspace) -> None:
    assert await store.list_files(ws.id) == []
    await store.write(ws.id, "b.py", "1")
    b2 = await store.write(ws.id, "b.py", "22")
    a1 = await store.write(ws.id, "a/x.py", "x")
    files = await store.list_files(ws.id)
    assert [(f.path, f.version_id, f.number, f.size) for f in files] == [
        ("a/x.py", a1.id, 1, 1),
        ("b.py", b2.id, 2, 2),
    ]
    assert files[1].updated_at == b2.created_at


async def test_files_are_scoped_to_their_workspace(store: SqlVersionStore, ws: Workspace) -> None:
    other = await store.create_workspace("other")
    await store.write(ws.id, "a.py", "mine")
    with pytest.raises(FileNotFoundInWorkspaceError):
        await store.read(other.id, "a.py")
    assert await store.list_files(other.id) == []
    assert (await store.write(other.id, "a.py", "theirs")).number == 1


async def test_history_is_oldest_first(store: SqlVersionStore, ws: Workspace) -> None:
    written = [await store.write(ws.id, "h.md", f"v{i}\n", message=f"m{i}") for i in range(1, 6)]
    history = await store.history(ws.id, "h.md")
    assert history == written
    assert [v.parent_id for v in history] == [None] + [v.id for v in written[:-1]]


async def test_diff_between_any_two_versions(store: SqlVersionStore, ws: Workspace) -> None:
    v1 = await store.write(ws.id, "d.py", "a\nb\nc\n")
    await store.write(ws.id, "d.py", "a\nB\nc\n")
    v3 = await store.write(ws.id, "d.py", "a\nB\nc\nd")
    forward = await store.diff(ws.id, "d.py", 1, 3)
    assert forward == await store.diff(ws.id, "d.py", v1.id, v3.id)
    assert forward.startswith("--- a/d.py\n+++ b/d.py\n")
    assert "-b\n" in forward and "+B\n" in forward and "+d\n\\ No newline at end of file\n" in forward
    backward = await store.diff(ws.id, "d.py", 3, "v1")
    assert "+b\n" in backward and "-B\n" in backward
    assert await store.diff(ws.id, "d.py", 2, 2) == ""


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs the patch tool")
async def test_stored_diffs_apply_with_patch(store: SqlVersionStore, ws: Workspace, tmp_path: Path) -> None:
    texts = ["one\ntwo\nthree", "one\n2\nthree\nfour\n", "zero\none\r\n2\x0cx\nfour\n", ""]
    for text in texts:
        await store.write(ws.id, "p.txt", text)
    target = tmp_path / "p.txt"
    target.write_bytes(texts[0].encode())
    for v in (await store.history(ws.id, "p.txt"))[1:]:
        subprocess.run(["patch", "-s", "-p1", "--binary"], input=v.diff.encode(), cwd=tmp_path, check=True)
        assert target.read_bytes() == v.content.encode(), v.number


async def test_rollback_then_diff(store: SqlVersionStore, ws: Workspace) -> None:
    v1 = await store.write(ws.id, "r.py", "good\n")
    await store.write(ws.id, "r.py", "bad\n")
    v3 = await store.rollback(ws.id, "r.py", 1, author="agent")
    assert v3.number == 3 and v3.content == v1.content and v3.sha256 == v1.sha256
    assert v3.message == "rollback to v1" and v3.author == "agent" and v3.parent_id is not None
    assert v3.diff == "--- a/r.py\n+++ b/r.py\n@@ -1 +1 @@\n-bad\n+good\n"
    assert await store.diff(ws.id, "r.py", 1, 3) == ""
    assert (await store.read(ws.id, "r.py")).id == v3.id
    v4 = await store.rollback(ws.id, "r.py", v3.id)
    assert v4.message == "rollback to v3" and v4.diff == ""
    assert [v.number for v in await store.history(ws.id, "r.py")] == [1, 2, 3, 4]


async def test_failed_rollback_stores_nothing(store: SqlVersionStore, ws: Workspace) -> None:
    await store.write(ws.id, "f.py", "1")
    with pytest.raises(VersionNotFoundError):
        await store.rollback(ws.id, "f.py", 9)
    with pytest.raises(FileNotFoundInWorkspaceError):
        await store.rollback(ws.id, "g.py", 1)
    assert [v.number for v in await store.history(ws.id, "f.py")] == [1]
    assert [f.path for f in await store.list_files(ws.id)] == ["f.py"]


async def test_large_file_round_trip(store: SqlVersionStore, ws: Workspace) -> None:
    big = "".join(f"line {i} {'x' * (i % 50)}\n" for i in range(20_000))  # ~700 KB
    await store.write(ws.id, "big.txt", big)
    changed = big.replace("line 10000 ", "LINE 10000 ")
    v2 = await store.write(ws.id, "big.txt", changed)
    assert (await store.read(ws.id, "big.txt")).content == changed
    assert v2.diff.count("\n-") == 1 and "+LINE 10000 " in v2.diff
