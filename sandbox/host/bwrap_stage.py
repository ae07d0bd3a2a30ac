"""The bubblewrap backend's stage on the host: a private dir every run's sandbox is built from.

Why a module of its own: everything here runs on the host as root *before* a sandbox exists, once
per backend: the staged ``/etc`` (harmless host pieces plus a synthesized passwd / group / hosts,
never the host's), the venv-style Python launcher, the warm sandboxes' stubs, the directory of
pooled network namespaces, and read-only bind staging of root-only sources (library sets under
``/root``) so the unprivileged bwrap can reach them. The stage is its own small tmpfs, so a bind
from it shows the sandbox no host path.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from sandbox.commands import ETC_PIECES, ETC_SYNTH
from sandbox.errors import SandboxStartError
from sandbox.warm.stubs import stage_stubs

__all__ = ["HostStage", "unmount"]

logger = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MNT_DETACH = 1, 2, 4, 32, 4096, 2


def _world_reachable(path: Path) -> bool:
    """True when every ancestor of ``path`` is searchable by "other" (so any uid can reach it)."""
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def _bind_mount(source: Path, target: Path) -> None:
    """Bind ``source`` read-only on ``target`` in the host mount namespace."""
    if _libc.mount(str(source).encode(), str(target).encode(), None, _MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise SandboxStartError(f"cannot stage {source} for the sandbox: {os.strerror(err)}")
    flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY
    if _libc.mount(None, str(target).encode(), None, flags, None) != 0:
        logger.warning("could not make %s read-only on the host side", target)


def _mount_tmpfs(target: Path, options: str) -> bool:
    """Mount a tmpfs on ``target``; False (logged) when that is not possible here."""
    flags = _MS_NOSUID | _MS_NODEV
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", flags, options.encode()) != 0:
        logger.warning("no tmpfs for the sandbox stage %s: %s", target, os.strerror(ctypes.get_errno()))
        return False
    return True


def unmount(target: Path) -> bool:
    """Detach the mount on ``target``; False (logged) when that failed."""
    if _libc.umount2(str(target).encode(), _MNT_DETACH) != 0:
        logger.warning("could not unmount %s: %s", target, os.strerror(ctypes.get_errno()))
        return False
    return True


def _stage_etc(target: Path, uid: int, gid: int) -> None:
    """Build the sandbox's ``/etc``: copies of the harmless host pieces plus synthesized files."""
    target.mkdir(mode=0o755)
    for piece in ETC_PIECES:
        src, dst = Path("/etc", piece), target / piece
        try:
            dst.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            if src.is_dir() and not src.is_symlink():
                shutil.copytree(src, dst, symlinks=True)
            elif src.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif src.is_file():
                shutil.copyfile(src, dst)
        except OSError as exc:  # unreadable piece: leave it out
            logger.debug("not staging /etc/%s: %s", piece, exc)
    for fname, text in ETC_SYNTH.items():
        (target / fname).write_text(text.format(uid=uid, gid=gid))
    (target / "resolv.conf").touch()  # mount point for the host's file when network is on
    for root, _dirs, files in os.walk(target):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


def _stage_venv(target: Path, python: str) -> None:
    """Build the venv-style launcher: ``bin/python3`` -> the system interpreter, and ``pyvenv.cfg``."""
    (target / "bin").mkdir(mode=0o755, parents=True)
    os.symlink(python, target / "bin" / "python3")
    home = os.path.dirname(python)
    (target / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
    for path in (target, target / "bin"):
        path.chmod(0o755)
    (target / "pyvenv.cfg").chmod(0o644)


def _sweep_stale_stages() -> None:
    """Remove stage dirs (and their bind mounts) left by a server that died without close()."""
    for root in Path(tempfile.gettempdir()).glob("agentic-bwrap-*-*"):
        try:
            owner = int(root.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if owner == os.getpid() or Path(f"/proc/{owner}").exists():
            continue
        subdirs = [root / "staged", root / "netns"]
        mounts = [p for sub in subdirs if sub.is_dir() for p in sorted(sub.iterdir())]
        mounts.append(root)  # the stage's own tmpfs, after what is mounted inside it
        if all([not os.path.ismount(target) or unmount(target) for target in mounts]):
            logger.info("removing stale sandbox stage %s (owner pid %d is gone)", root, owner)
            shutil.rmtree(root, ignore_errors=True)


class HostStage:
    """A private, world-traversable temp dir holding the staged ``/etc`` and staged bind mounts."""

    def __init__(self, uid: int, gid: int, python: str = "/usr/bin/python3") -> None:
        _sweep_stale_stages()
        self.root = Path(tempfile.mkdtemp(prefix=f"agentic-bwrap-{os.getpid()}-"))
        self.root.chmod(0o755)
        # Its own small tmpfs: a bind from it shows the sandbox only "/etc" in /proc/self/mountinfo,
        # not this dir's host path (which names the server's pid).
        self._tmpfs = _mount_tmpfs(self.root, "size=16m,mode=755")
        self.staged: dict[Path, Path] = {}
        try:
            _stage_etc(self.etc, uid, gid)
            _stage_venv(self.venv, python)
            self.python_stub = stage_stubs(self.warm, python)
        except BaseException:
            if self._tmpfs:
                unmount(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def etc(self) -> Path:
        """The directory bound read-only at ``/etc`` in every sandbox."""
        return self.root / "etc"

    @property
    def warm(self) -> Path:
        """The warm sandboxes' stubs, bound read-only at :data:`~sandbox.warm.stubs.WARM_DIR` in each."""
        return self.root / "warm"

    @property
    def netns_dir(self) -> Path:
        """Where pooled network namespaces are bound (see :mod:`sandbox.host.netns`)."""
        return self.root / "netns"

    @property
    def venv(self) -> Path:
        """The directory bound read-only at :data:`~sandbox.host.bwrap_args.PYTHON_VENV` in every sandbox."""
        return self.root / "python"

    def reachable(self, path: Path) -> Path:
        """Return a path to ``path`` that the unprivileged bwrap can open.

        bwrap runs as the sandbox uid, so a source below a root-only dir (a library set under
        ``/root``) is bind-mounted once into our world-traversable temp dir (undone by ``close``).
        """
        path = path.resolve()
        if _world_reachable(path):
            return path
        staged = self.staged.get(path)
        if staged is None:
            staged = self.root / "staged" / str(len(self.staged))
            staged.parent.mkdir(mode=0o755, exist_ok=True)
            if path.is_dir():
                staged.mkdir(mode=0o755)
            else:
                staged.touch(mode=0o755)
            _bind_mount(path, staged)
            self.staged[path] = staged
        return staged

    def cleanup(self) -> None:
        """Unmount staged binds and remove the dir; idempotent (also run by a GC finalizer)."""
        unmounted = all([unmount(target) for target in self.staged.values()])
        self.staged.clear()
        if unmounted and self._tmpfs:
            unmounted = unmount(self.root)
            self._tmpfs = not unmounted
        if unmounted:  # never recurse into a still-mounted library set
            shutil.rmtree(self.root, ignore_errors=True)
