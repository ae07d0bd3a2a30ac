"""Git export: every version a commit on a real bare repository, pushed by real git.

The remote is a bare repository the test creates, configured as an allowed ``file://`` remote;
``git log`` there is the judge. Runs on SQLite and Postgres (the ``store`` fixture).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from workspace import SqlVersionStore, Version, Workspace
from workspace.errors import (
    ExportRejectedError,
    GitTimeoutError,
    GitUnavailableError,
    UnknownRemoteError,
)
from workspace.git_export import GitExporter, exportable_path, git_identity
from workspace.git_remotes import GitExportSettings, GitRemote

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None, reason="git is not installed (apt-get install git)"
)


def bare_repo(tmp_path: Path, name: str = "remote.git") -> Path:
    repo = tmp_path / name
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    return repo


def exporter_for(repo: Path, **remote: object) -> GitExporter:
    settings = GitExportSettings(remotes={"origin": GitRemote(url=f"file://{repo}", **remote)})  # type: ignore[arg-type]
    return GitExporter(settings)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout


def log(repo: Path, branch: str = "main") -> list[list[str]]:
    """Oldest first: sha, author name, author mail, author time, committer time, subject, body."""
    out = git(repo, "log", "--reverse", "--format=%H%x1f%an%x1f%ae%x1f%at%x1f%ct%x1f%s%x1f%b%x1e", branch)
    return [entry.strip("\n").split("\x1f") for entry in out.split("\x1e") if entry.strip()]


async def write_history(store: SqlVersionStore, ws: Workspace) -> list[Version]:
    """Several files, authors and messages, a rollback among them; returned in the order written."""
    written = [
        await store.write(ws.id, "app.py", "print(1)\n", author="alice", message="first app"),
        await store.write(ws.id, "docs/README.md", "# Demo\n", author="agent", message="add readme"),
        await store.write(ws.id, "app.py", "print(2)\n", author="bob", message="second app"),
        await store.write(ws.id, 'my dir/naïve "q".txt', "x\n", author="Carol <evil@x>", message=""),
        await store.write(ws.id, "app.py", "print(3)\n", author="alice", message="third app\n\nwith a body"),
    ]
    written.append(await store.rollback(ws.id, "app.py", 1, author="dave"))
    return written


def expected_subject(v: Version) -> str:
    if not v.message:
        return f"{'Add' if v.number == 1 else 'Update'} {v.path} (v{v.number})"
    return v.message.splitlines()[0]


async def test_every_version_is_a_commit_in_order(
    store: SqlVersionStore, ws: Workspace, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    written = await write_history(store, ws)

    result = await exporter_for(repo).export(store, ws.id, "origin")

    assert result.commits == len(written) and result.versions == len(written)
    assert result.previous_head is None and result.branch == "main"
    entries = log(repo)
    assert [e[0] for e in entries][-1] == result.head
    assert len(entries) == len(written)
    for (sha, name, mail, at, ct, subject, body), v in zip(entries, written, strict=True):
        assert name == ("Carol evil@x" if v.author.startswith("Carol") else v.author)
        assert mail.endswith("@agentic.invalid") and "<" not in mail
        assert int(at) == int(ct) == int(v.created_at.timestamp())
        assert subject == expected_subject(v)
        assert body.rstrip().endswith(f"Workspace-Version: {v.id}")
        assert git(repo, "show", f"{sha}:{v.path}") == v.content
    assert entries[-1][5] == "rollback to v1"
    # The head's tree holds the latest version of every file, nothing else.
    files = sorted(git(repo, "ls-tree", "-r", "--name-only", "-z", "main").strip("\x00").split("\x00"))
    assert files == sorted({v.path for v in written})
    assert git(repo, "show", "main:app.py") == "print(1)\n"


async def test_second_export_pushes_only_new_commits(
    store: SqlVersionStore, ws: Workspace, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    exporter = exporter_for(repo)
    await store.write(ws.id, "a.txt", "1\n", author="alice", message="one")
    await store.write(ws.id, "b.txt", "1\n", author="bob", message="two")
    first = await exporter.export(store, ws.id, "origin")
    assert first.commits == 2 and first.head is not None

    await store.write(ws.id, "a.txt", "2\n", author="alice", message="three")
    await store.rollback(ws.id, "a.txt", 1, author="bob")
    await store.write(ws.id, "c.txt", "1\n", author="carol", message="five")
    # Another process (a new exporter, no memory of the first) exports again.
    second = await exporter_for(repo).export(store, ws.id, "origin")

    assert second.previous_head == first.head and second.commits == 3 and second.versions == 5
    git(repo, "merge-base", "--is-ancestor", first.head, "main")  # raises unless a fast-forward
    assert git(repo, "rev-list", "--count", f"{first.head}..main").strip() == "3"
    assert [e[5] for e in log(repo)] == ["one", "two", "three", "rollback to v1", "five"]

    third = await exporter.export(store, ws.id, "origin")
    assert third.commits == 0 and third.head == second.head == git(repo, "rev-parse", "main").strip()


async def test_branch_and_url_templates(store: SqlVersionStore, ws: Workspace, tmp_path: Path) -> None:
    repo = bare_repo(tmp_path)
    await store.write(ws.id, "a.txt", "1\n", message="one")
    exporter = exporter_for(repo, branch="ws/{tenant}/{workspace_id}")
    result = await exporter.export(store, ws.id, "origin")
    assert result.branch == f"ws/default/{ws.id}"
    assert [e[5] for e in log(repo, result.branch)] == ["one"]


async def test_unknown_remote_and_other_tenants_remote(
    store: SqlVersionStore, ws: Workspace, tmp_path: Path
) -> None:
    repo = bare_repo(tmp_path)
    settings = GitExportSettings(
        remotes={
            "shared": GitRemote(url=f"file://{repo}"),
            "alpha-only": GitRemote(url=f"file://{repo}", tenants=["alpha"]),
        }
    )
    exporter = GitExporter(settings)
    await store.write(ws.id, "a.txt", "1\n")
    with pytest.raises(UnknownRemoteError, match=r"unknown remote 'nope'.*'shared'"):
        await exporter.export(store, ws.id, "nope")
    # The workspace belongs to tenant "default": alpha's remote answers exactly as an unknown one.
    with pytest.raises(UnknownRemoteError, match=r"unknown remote 'alpha-only'; .*: 'shared'$"):
        await exporter.export(store, ws.id, "alpha-only")
    assert exporter.remote_names("alpha") == ["alpha-only", "shared"]
    assert git(repo, "for-each-ref").strip() == ""  # nothing was pushed


async def test_dot_git_paths_are_not_exported(store: SqlVersionStore, ws: Workspace, tmp_path: Path) -> None:
    repo = bare_repo(tmp_path)
    await store.write(ws.id, "ok.txt", "fine\n")
    await store.write(ws.id, ".git/hooks/post-checkout", "#!/bin/sh\nevil\n")
    await store.write(ws.id, "sub/.GIT./config", "evil\n")
    result = await exporter_for(repo).export(store, ws.id, "origin")
    assert result.skipped_paths == [".git/hooks/post-checkout", "sub/.GIT./config"]
    assert result.commits == 1
    assert git(repo, "ls-tree", "-r", "--name-only", "main").split() == ["ok.txt"]


def test_exportable_path_and_identity() -> None:
    assert exportable_path("src/app.py") and exportable_path(".github/x") and exportable_path("a.git/b")
    for bad in (".git", "a/.git/b", ".GIT", ".git.", ".git ", "git~1/x"):
        assert not exportable_path(bad), bad
    assert git_identity("Ann <a@b>\n", "d.invalid") == "Ann a@b <ann-a-b@d.invalid>"
    assert git_identity("<>", "d.invalid") == "unknown <unknown@d.invalid>"


async def test_concurrent_push_is_refused_not_overwritten(
    store: SqlVersionStore, ws: Workspace, tmp_path: Path
) -> None:
    """Another push lands between our fetch and our push: ours is refused (409 upstream), theirs stays."""
    repo = bare_repo(tmp_path)
    real_git = shutil.which("git")
    wrapper = tmp_path / "git-racing"
    # Before the real push, push a commit of someone else's to the same branch.
    wrapper.write_text(
        "#!/bin/sh\nset -e\n"
        'if [ "$1" = push ]; then\n'
        "  export GIT_AUTHOR_NAME=them GIT_AUTHOR_EMAIL=them@x\n"
        "  export GIT_COMMITTER_NAME=them GIT_COMMITTER_EMAIL=them@x\n"
        f"  tree=$({real_git} mktree </dev/null)\n"
        f'  c=$(echo theirs | {real_git} commit-tree "$tree")\n'
        f'  {real_git} push --quiet "file://{repo}" "$c:refs/heads/main"\n'
        "fi\n"
        f'exec {real_git} "$@"\n'
    )
    wrapper.chmod(0o755)
    settings = GitExportSettings(remotes={"origin": GitRemote(url=f"file://{repo}")}, git_binary=str(wrapper))
    await store.write(ws.id, "a.txt", "1\n", message="ours")
    with pytest.raises(ExportRejectedError, match="changed while exporting; export again"):
        await GitExporter(settings).export(store, ws.id, "origin")
    assert [e[5] for e in log(repo)] == ["theirs"]
    # Exporting again (plain git) builds on their commit: a fast-forward, nothing lost.
    again = await exporter_for(repo).export(store, ws.id, "origin")
    assert again.commits == 1 and [e[5] for e in log(repo)] == ["theirs", "ours"]


async def test_git_missing_and_timeout(store: SqlVersionStore, ws: Workspace, tmp_path: Path) -> None:
    repo = bare_repo(tmp_path)
    await store.write(ws.id, "a.txt", "1\n")
    missing = GitExportSettings(
        remotes={"origin": GitRemote(url=f"file://{repo}")}, git_binary="/nonexistent/git"
    )
    with pytest.raises(GitUnavailableError, match="apt-get install git"):
        await GitExporter(missing).export(store, ws.id, "origin")
    slow = tmp_path / "git-slow"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    settings = GitExportSettings(
        remotes={"origin": GitRemote(url=f"file://{repo}", timeout_s=0.5)}, git_binary=str(slow)
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GitTimeoutError, match="within 0.5 s"):
        await GitExporter(settings).export(store, ws.id, "origin")
    assert loop.time() - started < 10


@pytest.mark.parametrize(
    ("remote", "error"),
    [
        ({"url": "ssh://git@example.com/x.git"}, "https://, http:// or file://"),
        ({"url": "/srv/git/x.git"}, "https://, http:// or file://"),
        ({"url": "https://user:pw@example.com/x.git"}, "credentials"),
        ({"url": "https://example.com/{name}.git"}, "only {tenant} and {workspace_id}"),
        ({"url": "https://example.com/{tenant.__class__}.git"}, "only {tenant} and {workspace_id}"),
        ({"url": "file://host/x.git"}, "file:///absolute/path"),
        ({"url": "https://example.com/x.git", "branch": "a..b"}, "not a valid git branch"),
        ({"url": "https://example.com/x.git", "branch": "-x"}, "not a valid git branch"),
        ({"url": "file:///srv/x.git", "token": "t0ken"}, "a token is for http"),
        ({"url": "https://example.com/x.git", "extra": 1}, "Extra inputs"),
    ],
)
def test_remote_settings_refuse_what_they_cannot_keep_safe(remote: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        GitRemote(**remote)  # type: ignore[arg-type]


def test_remotes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AGENTIC_EXPORT_REMOTES",
        '{"gitea": {"url": "https://git.example.com/{tenant}/{workspace_id}.git", "token": "s3cret"}}',
    )
    settings = GitExportSettings()
    target = settings.remote_for("gitea", tenant="alpha", workspace_id="ab" * 16)
    assert target.url == f"https://git.example.com/alpha/{'ab' * 16}.git" and target.branch == "main"
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("AGENTIC_EXPORT_REMOTES", '{"bad name!": {"url": "https://x.example/y.git"}}')
    with pytest.raises(ValidationError, match="remote name"):
        GitExportSettings()
