"""Unit tests of the pure helpers: paths, content checks, diffs, URLs, settings, exports."""

from __future__ import annotations

from pathlib import Path

import pytest

import workspace
from workspace import BinaryContentError, FileTooLargeError, InvalidPathError, WorkspaceSettings, open_store
from workspace.content import check_content, unified_diff
from workspace.engine import normalise_url
from workspace.search import make_snippet, query_terms


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a//b/./c", "a/b/c"), ("./x.py", "x.py"), ("dir/", "dir"), ("a b/ü.txt", "a b/ü.txt"), ("...", "...")],
)
def test_normalise_path(raw: str, expected: str) -> None:
    assert workspace.normalise_path(raw) == expected


@pytest.mark.parametrize("raw", ["..", "a/../b", "/a", "//a", "a\\b", "a\x00", "a\tb", "", "./.", "z" * 600])
def test_normalise_path_refuses(raw: str) -> None:
    with pytest.raises(InvalidPathError):
        workspace.normalise_path(raw)


def test_check_content() -> None:
    assert check_content("é", 2) == b"\xc3\xa9"
    with pytest.raises(FileTooLargeError, match="maximum is 1 bytes"):
        check_content("é", 1)
    with pytest.raises(BinaryContentError):
        check_content("\x00", 10)
    with pytest.raises(BinaryContentError):
        check_content(b"bytes", 10)  # type: ignore[arg-type]


def test_unified_diff_format() -> None:
    assert unified_diff("p", "same", "same") == ""
    assert unified_diff("p", "", "new\n") == "--- a/p\n+++ b/p\n@@ -0,0 +1 @@\n+new\n"
    assert unified_diff("p", "a\x0cb\n", "a\x0cc\n") == "--- a/p\n+++ b/p\n@@ -1 +1 @@\n-a\x0cb\n+a\x0cc\n"


def test_query_terms_and_snippet() -> None:
    assert query_terms("np.array Foo_bar foo") == ["np", "array", "foo", "bar"]
    assert query_terms("!!! ''") == []
    long_body = "x " * 200 + "needle here" + " y" * 200
    snippet = make_snippet(long_body, ["needle"])
    assert snippet.startswith("…") and snippet.endswith("…") and "**needle** here" in snippet
    assert make_snippet("no match", ["zzz"]) == "no match"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db"),
        ("postgres://u@h/db?sslmode=require", "postgresql+psycopg://u@h/db?sslmode=require"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("sqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
        ("sqlite+aiosqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "sqlite://", "sqlite:///:memory:", "postgresql+asyncpg://h/db"]
)
def test_normalise_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        normalise_url(url)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENTIC_DATABASE_URL", raising=False)
    monkeypatch.setenv("AGENTIC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AGENTIC_MAX_FILE_BYTES", "123")
    settings = WorkspaceSettings()
    assert settings.max_file_bytes == 123
    assert settings.resolved_url() == f"sqlite+aiosqlite:///{tmp_path / 'agentic.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://h/db")
    assert WorkspaceSettings().resolved_url() == "postgresql://h/db"


async def test_open_store_creates_the_sqlite_file(tmp_path: Path) -> None:
    settings = WorkspaceSettings(data_dir=tmp_path / "new" / "dir", database_url=None, max_file_bytes=5)
    async with open_store(settings) as store:
        ws = await store.create_workspace("w")
        with pytest.raises(FileTooLargeError):
            await store.write(ws.id, "a", "123456")
    assert (tmp_path / "new" / "dir" / "agentic.db").is_file()


def test_public_names_are_exported() -> None:
    for name in workspace.__all__:
        assert hasattr(workspace, name), name
    assert sorted(workspace.__all__) == workspace.__all__
