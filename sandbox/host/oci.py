"""OCI bundles for the gVisor backend: a read-only root made of host pieces, and one config per run.

Why explicit bundles: ``runsc do`` would show the sandbox the host's whole filesystem. Here the root
is an almost empty directory (built once per backend instance) holding only mount points, the
merged-``/usr`` symlinks and a synthesized ``/etc`` (no host passwd, shadow or machine secrets); the
system dirs, a few safe ``/etc`` pieces, the library set and the per-run scratch dir are bind mounts
listed in each run's ``config.json``. gVisor's gofer serves them, so the sandboxed code never touches
host syscalls for files directly.

Layout inside (same as the bubblewrap backend): ``/sandbox/work`` is cwd and ``$HOME``; ``/tmp``
(the same dir as ``/sandbox/tmp``) and ``/dev/shm`` are bind mounts of the scratch tmpfs too, so all
a run can write is that one host tmpfs of ``disk_mb`` (``/dev`` itself is root's, mode 755).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sandbox.base import Limits
from sandbox.commands import ETC_PIECES, ETC_SYNTH, SCRATCH_DIR, TMP_DIR, WORK_DIR, check_relative_path
from sandbox.errors import InvalidRunRequestError
from sandbox.host.seccomp_policy import Rule, policy

__all__ = [
    "SCRATCH_DIR",
    "TMP_DIR",
    "WORK_DIR",
    "BindMount",
    "RunSpec",
    "build_config",
    "build_rootfs",
    "prepare_scratch",
    "release_scratch",
    "seccomp_profile",
]

logger = logging.getLogger(__name__)


SHM_SUBDIR = "shm"  # the scratch tmpfs's dir shown at /dev/shm
_TOP_DIRS = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
_NOFILE = 1024
_MS_NOSUID, _MS_NODEV, _MNT_DETACH, _EINVAL = 2, 4, 2, 22
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class BindMount:
    """A host path shown at ``destination`` inside the sandbox."""

    source: Path
    destination: str
    writable: bool = False


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything one run's ``config.json`` depends on."""

    args: Sequence[str]
    env: Mapping[str, str]
    limits: Limits
    uid: int
    gid: int
    network: bool
    extra_mounts: Sequence[BindMount] = field(default_factory=tuple)
    memory_headroom_mb: int = 0  # the Sentry's own memory, added to the program's cap
    rlimit_memory: bool = False  # no cgroups: cap the address space instead


def _static_mounts(rootfs: Path) -> list[BindMount]:
    mounts = [BindMount(Path("/usr"), "/usr")]
    for top in _TOP_DIRS:
        host = Path("/") / top
        if host.is_dir() and not host.is_symlink():
            mounts.append(BindMount(host, f"/{top}"))
    for piece in ETC_PIECES:
        host = Path("/etc") / piece
        if (rootfs / "etc" / piece).exists() and host.exists():
            mounts.append(BindMount(host, f"/etc/{piece}"))
    return mounts


def build_rootfs(rootfs: Path, *, uid: int, gid: int, mount_points: Sequence[str] = ()) -> list[BindMount]:
    """Create the shared read-only root under ``rootfs``; return the bind mounts every run needs.

    Args:
        rootfs: an empty directory (it must not exist yet or be empty).
        uid: the sandbox user's uid (named in the synthesized ``/etc/passwd``).
        gid: its gid.
        mount_points: extra absolute paths (library set, Deno) that runs may bind over.
    """
    rootfs.mkdir(mode=0o755, parents=True, exist_ok=True)
    for sub in ("usr", "etc", "proc", "dev", SCRATCH_DIR.lstrip("/")):
        (rootfs / sub).mkdir(mode=0o755, exist_ok=True)
    (rootfs / "tmp").mkdir(mode=0o755)  # the scratch dir's tmp/ is bound here (see build_config)
    for top in _TOP_DIRS:
        host = Path("/") / top
        if host.is_symlink():
            (rootfs / top).symlink_to(os.readlink(host))
        elif host.is_dir():
            (rootfs / top).mkdir(mode=0o755)
    for fname, text in ETC_SYNTH.items():
        target = rootfs / "etc" / fname
        target.write_text(text.format(uid=uid, gid=gid))
        target.chmod(0o644)
    for piece in ETC_PIECES:
        host = Path("/etc") / piece
        if not host.exists():
            continue
        target = rootfs / "etc" / piece
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if host.is_dir():
            target.mkdir(mode=0o755, exist_ok=True)
        else:
            target.touch(mode=0o644)
    (rootfs / "etc" / "resolv.conf").touch(mode=0o644)
    for point in mount_points:
        target = rootfs / point.lstrip("/")
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if point.endswith("/deno"):  # a single file (the Deno binary)
            target.touch(mode=0o755)
        else:
            target.mkdir(mode=0o755, exist_ok=True)
    return _static_mounts(rootfs)


def prepare_scratch(
    scratch: Path, files: Mapping[str, str | bytes], *, disk_mb: int, uid: int, gid: int
) -> None:
    """Mount a ``disk_mb`` tmpfs at ``scratch`` (created here) with ``work/`` + ``tmp/`` and ``files``.

    Why a host tmpfs: its size cap is the disk limit (``ENOSPC``), and unmounting frees it at once.

    Raises:
        InvalidRunRequestError: the files do not fit, or a path escapes the scratch dir (the mount
            may already be made: the caller's clean-up calls :func:`release_scratch`).
        OSError: the mount failed.
    """
    total = sum(len(c.encode() if isinstance(c, str) else c) for c in files.values())
    if total > max(1, disk_mb) * 1024 * 1024:
        raise InvalidRunRequestError(f"files ({total} bytes) do not fit the {disk_mb} MB scratch dir")
    scratch.mkdir(mode=0o755)
    opts = f"size={max(1, disk_mb) * 1024 * 1024},mode=0755,uid={uid},gid={gid}".encode()
    if _libc.mount(b"tmpfs", os.fsencode(scratch), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {scratch}: {os.strerror(err)}")
    work = scratch / PurePosixPath(WORK_DIR).name
    for sub in (work, scratch / PurePosixPath(TMP_DIR).name, scratch / SHM_SUBDIR):
        sub.mkdir(mode=0o755)
        os.chown(sub, uid, gid)
    for raw, content in files.items():
        rel = check_relative_path(raw)
        for parent in reversed(PurePosixPath(rel).parents[:-1]):
            folder = work / parent
            if not folder.exists():
                folder.mkdir(mode=0o755)
                os.chown(folder, uid, gid)
        target = work / rel
        target.write_bytes(content.encode() if isinstance(content, str) else bytes(content))
        target.chmod(0o644)
        os.chown(target, uid, gid)


def release_scratch(scratch: Path) -> None:
    """Unmount the scratch tmpfs (lazily, so a straggler cannot keep it); fine if not mounted."""
    if _libc.umount2(os.fsencode(scratch), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (_EINVAL, 2):  # not mounted / gone
            logger.warning("umount %s: %s", scratch, os.strerror(err))


def _mount_entry(mount: BindMount) -> dict[str, Any]:
    options = ["rbind", "rw" if mount.writable else "ro", "nosuid", "nodev"]
    return {"destination": mount.destination, "type": "bind", "source": str(mount.source), "options": options}


def _rlimits(spec: RunSpec) -> list[dict[str, Any]]:
    limits = spec.limits
    values = {
        "RLIMIT_NOFILE": _NOFILE,
        # gVisor counts threads like Linux; a pids cgroup cannot be used (runsc needs >= 256 host tasks).
        "RLIMIT_NPROC": max(limits.pids, 1),
        "RLIMIT_FSIZE": max(1, limits.disk_mb) * 1024 * 1024,
        "RLIMIT_CORE": 0,
    }
    if spec.rlimit_memory:
        values["RLIMIT_AS"] = (limits.memory_mb + spec.memory_headroom_mb) * 1024 * 1024
    return [{"type": name, "hard": value, "soft": value} for name, value in values.items()]


_OCI_OPS = {"eq": "SCMP_CMP_EQ", "ne": "SCMP_CMP_NE", "masked_eq": "SCMP_CMP_MASKED_EQ"}


def _oci_rule(rule: Rule) -> dict[str, Any]:
    entry: dict[str, Any] = {"names": [rule.name], "action": "SCMP_ACT_ERRNO", "errnoRet": rule.errno}
    if rule.arg is not None:
        check = rule.arg
        arg = {"index": check.index, "value": check.value, "op": _OCI_OPS[check.op]}
        if check.op == "masked_eq":  # OCI: value = mask, valueTwo = the masked value
            arg = {**arg, "value": check.mask, "valueTwo": check.value}
        entry["args"] = [arg]
    return entry


def seccomp_profile(*, network: bool) -> dict[str, Any]:
    """Return ``linux.seccomp``: :func:`sandbox.host.seccomp_policy.policy`, enforced inside gVisor.

    Why, when gVisor already isolates: namespace and mount calls succeed *inside* the Sentry (they
    are harmless to the host, but a program should see the same policy on every backend), and
    without network only ``AF_UNIX`` sockets may exist, so even the sandbox's own loopback is unusable.

    This runsc ignores ``errnoRet`` (every denial is ``EPERM``), so rules that need their errno
    (``clone3``: glibc falls back to ``clone`` only on ``ENOSYS``) are left out.
    """
    rules = [_oci_rule(rule) for rule in policy(network=network) if not rule.needs_errno]
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules}


def build_config(rootfs: Path, static_mounts: Sequence[BindMount], spec: RunSpec) -> dict[str, Any]:
    """Return one run's OCI runtime config (``config.json``) as a dict."""
    namespaces = ["pid", "ipc", "uts", "mount", "network"]  # with network too: only the egress proxy
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        # gVisor would add its own (synthetic) sysfs; an empty read-only dir is all programs need.
        {"destination": "/sys", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid", "nodev"]},
    ]
    mounts += [_mount_entry(m) for m in static_mounts]
    mounts += [_mount_entry(m) for m in spec.extra_mounts]
    scratch = next((m.source for m in spec.extra_mounts if m.destination == SCRATCH_DIR), None)
    if scratch is not None:
        # Without these runsc mounts its own unsized tmpfs at /tmp (and /dev/shm would be one too):
        # both live on the run's scratch tmpfs instead, inside disk_mb.
        mounts.append(_mount_entry(BindMount(scratch / PurePosixPath(TMP_DIR).name, "/tmp", writable=True)))
        mounts.append(_mount_entry(BindMount(scratch / SHM_SUBDIR, "/dev/shm", writable=True)))
    memory = (spec.limits.memory_mb + spec.memory_headroom_mb) * 1024 * 1024
    linux: dict[str, Any] = {
        "namespaces": [{"type": ns} for ns in namespaces],
        "resources": {
            "memory": {"limit": memory, "swap": memory},
            "cpu": {"quota": max(int(spec.limits.cpus * 100_000), 1000), "period": 100_000},
        },
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
        "seccomp": seccomp_profile(network=spec.network),
    }
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": []},
            "args": list(spec.args),
            "env": [f"{k}={v}" for k, v in spec.env.items()],
            "cwd": WORK_DIR,
            "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
            "rlimits": _rlimits(spec),
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": linux,
    }
