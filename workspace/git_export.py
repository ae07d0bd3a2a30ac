"""Publish a workspace's history to a git remote: each version one commit, in order, then push.

How: the remote's branch (if any) is fetched into a temporary bare repository; the versions it
already holds are read from the ``Workspace-Version: <id>`` line that ends each commit message we
write; the versions it lacks become new commits on top of it in one ``git fast-import`` stream
(author = the version's author, author and committer time = the version's time, message = the
version's message); then a plain ``git push`` (never forced) sends only those commits. So a second
export after more writes is a fast-forward of the first, and two exports racing for one branch
cannot overwrite each other: the later push is refused (:class:`ExportRejectedError`) and can be
retried.

Order: versions of one path keep their numbers' order; across paths they are merged by time (then
path), which is the order they were written in.

Paths with a ``.git`` component (``.git/hooks/x``) are not exported: git would refuse them on
checkout, and a hook there is an attack on whoever clones. They are listed in the result.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import heapq
import logging
import re
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workspace.base import Version, VersionStore
from workspace.errors import ExportRejectedError, GitRemoteError
from workspace.git_cli import GitResult, GitRunner
from workspace.git_remotes import GitExportSettings, ResolvedRemote

__all__ = [
    "TRAILER",
    "ExportResult",
    "GitExporter",
    "commit_message",
    "exportable_path",
    "git_identity",
    "merge_histories",
]

logger = logging.getLogger(__name__)

TRAILER = "Workspace-Version"
_TRAILER_LINE = re.compile(rf"^{TRAILER}: ([0-9a-f]{{32}})$")
_DOT_GIT = re.compile(r"^(\.git|git~\d+)[. ]*$", re.IGNORECASE)  # also NTFS/8.3 spellings of .git
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    """What one export did. ``head`` is None only when nothing was ever exported (empty workspace)."""

    workspace_id: str
    remote: str
    branch: str
    head: str | None
    previous_head: str | None
    commits: int  # new commits pushed by this export
    versions: int  # versions in the workspace (exported now or before, skipped ones included)
    skipped_paths: list[str] = field(default_factory=list)


def exportable_path(path: str) -> bool:
    """False for paths git must not carry (a ``.git`` component in any spelling)."""
    return not any(_DOT_GIT.match(part) for part in path.split("/"))


def git_identity(author: str, email_domain: str) -> str:
    """``Name <mail>`` for a version's author (client text: ``<``, ``>`` and controls removed)."""
    name = " ".join("".join(ch for ch in author if ch not in "<>" and ch.isprintable()).split())[:100]
    name = name or "unknown"
    local = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")[:64] or "unknown"
    return f"{name} <{local}@{email_domain}>"


def commit_message(version: Version) -> str:
    """The version's message (or a plain default) and the trailer that marks it exported."""
    text = version.message.replace("\x00", "").rstrip()
    if not text.strip():
        verb = "Add" if version.number == 1 else "Update"
        text = f"{verb} {version.path} (v{version.number})"
    return f"{text}\n\n{TRAILER}: {version.id}\n"


def merge_histories(histories: Sequence[Sequence[Version]]) -> list[Version]:
    """One sequence of all versions: each path's in number order, paths interleaved by time."""
    ordered = [sorted(h, key=lambda v: v.number) for h in histories]
    return list(heapq.merge(*ordered, key=lambda v: (v.created_at, v.path, v.number)))


def _quote(path: str) -> bytes:
    """A fast-import path, C-quoted (workspace paths hold no backslash or control character)."""
    return b'"' + path.replace('"', '\\"').encode("utf-8") + b'"'


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


class GitExporter:
    """Exports workspaces to the remotes in :class:`GitExportSettings`; one per server process."""

    def __init__(self, settings: GitExportSettings) -> None:
        self.settings = settings
        # One export at a time per target in this process (others would only be refused later).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def remote_names(self, tenant: str) -> list[str]:
        """The remotes ``tenant`` may export to."""
        return self.settings.remote_names(tenant)

    async def export(self, store: VersionStore, workspace_id: str, remote: str) -> ExportResult:
        """Push the workspace's versions that the remote's branch lacks, as new commits on it.

        ``store`` decides who may read the workspace (the server passes a tenant-scoped view);
        the workspace's tenant decides which remotes it may use.

        Raises:
            WorkspaceNotFoundError: no such workspace (in ``store``'s view).
            UnknownRemoteError: ``remote`` is not configured, or not for this tenant.
            ExportRejectedError: the branch moved on meanwhile (export again).
            GitRemoteError: the remote refused the push or could not be reached.
            GitUnavailableError, GitTimeoutError: no git here; a git command ran too long.
        """
        workspace = await store.get_workspace(workspace_id)
        target = self.settings.remote_for(remote, tenant=workspace.tenant, workspace_id=workspace.id)
        key = f"{target.url}\x00{target.branch}"
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            versions = await self._versions(store, workspace.id)
            tmp = tempfile.TemporaryDirectory(prefix="agentic-export-")
            try:
                return await self._export_in(Path(tmp.name), target, workspace.id, versions)
            finally:
                await asyncio.to_thread(tmp.cleanup)

    @staticmethod
    async def _versions(store: VersionStore, workspace_id: str) -> list[Version]:
        files = await store.list_files(workspace_id)
        return merge_histories([await store.history(workspace_id, f.path) for f in files])

    def _runner(self, tmp: Path, target: ResolvedRemote) -> GitRunner:
        config: dict[str, str] = {}
        token = target.remote.token
        if token is not None:
            basic = base64.b64encode(f"{target.remote.username}:{token.get_secret_value()}".encode()).decode()
            config["http.extraHeader"] = f"Authorization: Basic {basic}"
        home = tmp / "home"
        home.mkdir()
        return GitRunner(
            self.settings.git_binary,
            git_dir=tmp / "repo.git",
            home=home,
            allow_protocol=target.scheme,
            config=config,
            timeout_s=target.remote.timeout_s,
        )

    async def _export_in(
        self, tmp: Path, target: ResolvedRemote, workspace_id: str, versions: list[Version]
    ) -> ExportResult:
        git = self._runner(tmp, target)
        ref = f"refs/heads/{target.branch}"
        _expect(await git.run("init", "--quiet", "--bare", str(git.git_dir)), "git init", target)
        previous = await self._remote_head(git, target, ref)
        done: set[str] = set()
        if previous is not None:
            fetched = await git.run("fetch", "--quiet", "--no-tags", target.url, f"+{ref}:{ref}")
            _expect(fetched, "fetching the branch", target)
            done = await _exported_ids(git, previous)
        skipped = sorted({v.path for v in versions if not exportable_path(v.path)})
        todo = [v for v in versions if v.id not in done and exportable_path(v.path)]
        result = ExportResult(
            workspace_id=workspace_id,
            remote=target.name,
            branch=target.branch,
            head=previous,
            previous_head=previous,
            commits=0,
            versions=len(versions),
            skipped_paths=skipped,
        )
        if not todo:
            return result
        stream = self._fast_import_stream(todo, ref, previous)
        _expect(await git.run("fast-import", "--quiet", "--done", stdin=stream), "git fast-import", target)
        head = (await git.run("rev-parse", "--verify", ref)).stdout.decode().strip()
        await _push(git, target, ref)
        logger.info(
            "exported workspace %s to remote %s branch %s: %d new commit(s), %s..%s",
            workspace_id,
            target.name,
            target.branch,
            len(todo),
            previous or "(new)",
            head,
        )
        return dataclasses.replace(result, head=head, commits=len(todo))

    @staticmethod
    async def _remote_head(git: GitRunner, target: ResolvedRemote, ref: str) -> str | None:
        listed = await git.run("ls-remote", "--refs", target.url, ref)
        _expect(listed, "reading the remote", target)
        for line in listed.stdout.decode("utf-8", "replace").splitlines():
            sha, _, name = line.partition("\t")
            if name == ref and _SHA.match(sha):
                return sha
        return None

    def _fast_import_stream(self, versions: list[Version], ref: str, parent: str | None) -> Iterator[bytes]:
        committer_name = self.settings.committer_name
        committer = f"{committer_name} <{self.settings.committer_email}>".encode()
        for i, version in enumerate(versions):
            when = b"%d +0000" % int(version.created_at.timestamp())
            author = git_identity(version.author, self.settings.author_email_domain).encode()
            head = b"commit " + ref.encode() + b"\n"
            head += b"author " + author + b" " + when + b"\n"
            head += b"committer " + committer + b" " + when + b"\n"
            head += _data(commit_message(version).encode("utf-8"))
            if i == 0 and parent is not None:
                head += b"from " + parent.encode() + b"\n"
            yield head + b"M 100644 inline " + _quote(version.path) + b"\n"
            yield _data(version.content.encode("utf-8"))
        yield b"done\n"


def _expect(result: GitResult, what: str, target: ResolvedRemote) -> None:
    if not result.ok:
        logger.warning("export to remote %s: %s failed: %s", target.name, what, result.error_text())
        raise GitRemoteError(f"{what} failed for remote {target.name!r}; the server log has git's message")


async def _exported_ids(git: GitRunner, head: str) -> set[str]:
    """Version ids already on the branch: the trailer line that ends each of our commit messages."""
    listed = await git.run("log", "--format=%B%x00", head)
    ids: set[str] = set()
    for message in listed.stdout.decode("utf-8", "replace").split("\x00"):
        lines = message.strip().splitlines()
        found = _TRAILER_LINE.match(lines[-1]) if lines else None
        if found:
            ids.add(found.group(1))
    return ids


async def _push(git: GitRunner, target: ResolvedRemote, ref: str) -> None:
    """Push without force; a refusal because the branch moved on is :class:`ExportRejectedError`."""
    pushed = await git.run("push", "--porcelain", "--no-verify", target.url, f"{ref}:{ref}")
    if pushed.ok:
        return
    report = pushed.stdout.decode("utf-8", "replace")
    if any(
        line.startswith("!") and ("non-fast-forward" in line or "fetch first" in line or "stale" in line)
        for line in report.splitlines()
    ):
        raise ExportRejectedError(
            f"branch {target.branch!r} of remote {target.name!r} changed while exporting; export again"
        )
    _expect(pushed, "pushing", target)
