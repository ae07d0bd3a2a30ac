"""The bubblewrap command line: the part every run shares, the part each run adds, the launcher's rlimits.

How a run's sandbox is described to bwrap: the root is an empty tmpfs with read-only system dirs, the
stage's ``/etc`` and Python launcher (:mod:`sandbox.host.bwrap_stage`), ``/proc``, a minimal ``/dev``
(remounted read-only, with its own sized ``/dev/shm``) and a size-capped tmpfs scratch dir
(``/sandbox/work`` = cwd and ``$HOME``, ``/tmp`` -> ``/sandbox/tmp``) filled from memfds; the library
set, Deno and the run's network dir are read-only binds. Everything a run can write is sized: at most
``disk_mb + min(disk_mb, 64)`` MB. bwrap reads these options from a memfd (``--args FD``), so the
program sees no host path or set-up argument in ``/proc/1/cmdline``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

from sandbox.base import Limits, RunRequest
from sandbox.commands import DENO_PATH, SCRATCH_DIR, TMP_DIR, WORK_DIR, check_relative_path
from sandbox.config import LocalSettings
from sandbox.errors import InvalidRunRequestError
from sandbox.guard import check_file_count
from sandbox.host import seccomp
from sandbox.host.cgroup import Cgroup
from sandbox.host.egress_wiring import NET_DIR, NetWiring
from sandbox.host.libset_dirs import LibrarySet
from sandbox.warm.stubs import WARM_DIR

__all__ = [
    "BWRAP_PIDS",
    "PYTHON_VENV",
    "args_memfd",
    "launcher_rlimits",
    "run_args",
    "shm_bytes",
    "static_args",
    "unsized_tmpfs",
]

# A venv-style launcher of the system interpreter (``pyvenv.cfg`` with no system site-packages).
# Why: the sets are "stdlib only" / their own PYTHONPATH closure, so the host's dist-packages and
# their ``.pth`` start-up hooks (which import whatever the host installed) must not run in every
# sandbox; this also saves ~1.5 ms per Python start. ``site`` (``exit()``, ``help()``) stays.
PYTHON_VENV = "/opt/python"
# Our processes counted in the pids cap: the launcher (a subreaper), bwrap's monitor, its namespace init.
BWRAP_PIDS = 3
SHM_MAX_MB = 64


def _memfd(name: str, data: bytes) -> int:
    """A memfd holding ``data``, positioned at its start (the caller closes it)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def args_memfd(args: list[str]) -> int:
    """A memfd holding ``args`` NUL-separated, for ``bwrap --args FD`` (the caller closes it)."""
    return _memfd("agentic-args", b"".join(arg.encode() + b"\0" for arg in args))


def static_args(local: LocalSettings, etc: Path, venv: Path, *, network: bool, new_netns: bool) -> list[str]:
    """Return the bwrap argv prefix shared by every run with this network setting.

    ``new_netns=False``: the launcher already put the run in a pooled empty network namespace
    (runs without network only; a run with network always gets a new one with ``lo`` up).
    """
    args = [
        str(local.bwrap_path),
        "--unshare-user",
        "--uid",
        str(local.sandbox_uid),
        "--gid",
        str(local.sandbox_gid),
        "--disable-userns",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    if network or new_netns:  # network: a namespace of its own with ``lo`` up (bwrap sets it up)
        args.append("--unshare-net")
    for top in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        host = Path("/") / top
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{top}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{top}"]
    args += ["--ro-bind", str(etc), "/etc"]  # one mount instead of one per file (no resolv.conf:
    # names are resolved by the egress proxy, the only way out)
    args += ["--ro-bind", str(venv), PYTHON_VENV]
    args += ["--proc", "/proc", "--dev", "/dev"]
    return args


def run_args(
    request: RunRequest,
    fds: list[int],
    *,
    libset: LibrarySet,
    libset_source: Path | None,
    deno: Path | None,
    wiring: NetWiring | None,
    warm_dir: Path | None = None,
    zygote: bool = False,
) -> list[str]:
    """Per-run bwrap arguments: scratch tmpfs, request files (memfds), binds, seccomp; ends with ``--``.

    Args:
        request: The run.
        fds: Receives every fd opened here (the caller passes them to bwrap, then closes them).
        libset: The run's library set.
        libset_source: Where bwrap can open the set's directory (None: stdlib only).
        deno: Where bwrap can open the Deno binary (TypeScript runs).
        wiring: The run's network plumbing (runs with network).
        warm_dir: The stubs a warm sandbox starts (bound read-only at ``sandbox.warm.stubs.WARM_DIR``).
        zygote: A warm key's fork server: its seccomp filter lets it make namespaces and mounts.

    Raises:
        InvalidRunRequestError: too many files, more bytes than the scratch dir, a path that escapes it.
    """
    limits = request.limits
    size = str(max(1, limits.disk_mb) * 1024 * 1024)
    args = ["--size", size, "--perms", "0755", "--tmpfs", SCRATCH_DIR]
    args += ["--dir", WORK_DIR, "--dir", TMP_DIR, "--symlink", TMP_DIR, "/tmp"]
    made: set[str] = set()
    check_file_count(len(request.files))  # defence in depth: the guard checked it already
    total = sum(len(c.encode() if isinstance(c, str) else c) for c in request.files.values())
    if total > max(1, limits.disk_mb) * 1024 * 1024:
        raise InvalidRunRequestError(f"files ({total} bytes) exceed the {limits.disk_mb} MB scratch dir")
    for raw, content in request.files.items():
        rel = check_relative_path(raw)
        for parent in reversed(list(PurePosixPath(rel).parents)[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--dir", f"{WORK_DIR}/{parent}"]
        data = content.encode() if isinstance(content, str) else bytes(content)
        fd = _memfd("agentic-file", data)
        fds.append(fd)
        args += ["--perms", "0644", "--file", str(fd), f"{WORK_DIR}/{rel}"]
    # /dev (bwrap's --dev tmpfs) becomes read-only; /dev/shm its own small sized tmpfs.
    args += ["--size", str(shm_bytes(limits)), "--perms", "1777", "--tmpfs", "/dev/shm"]
    args += ["--remount-ro", "/dev"]
    if libset_source is not None:
        args += ["--ro-bind", str(libset_source), libset.mount_point]
    if deno is not None:
        args += ["--ro-bind", str(deno), DENO_PATH]
    if wiring is not None:  # writable for a service: its forwarder creates app.sock there
        bind = "--bind" if wiring.ingress_port is not None else "--ro-bind"
        args += [bind, str(wiring.host_dir), NET_DIR]
    if warm_dir is not None:
        args += ["--ro-bind", str(warm_dir), WARM_DIR]
    bpf = seccomp.bpf_fd(request.network, zygote)
    fds.append(bpf)
    args += ["--remount-ro", "/", "--chdir", WORK_DIR, "--seccomp", str(bpf), "--"]
    return args


def launcher_rlimits(
    limits: Limits, cgroup: Cgroup | None, *, data_rlimit: bool = True, cpu_seconds: float | None = None
) -> dict[str, int]:
    """The rlimits the launcher sets before bwrap (root may lower them, never raise).

    ``data_rlimit=False`` skips RLIMIT_DATA in the fallback (V8 reserves more than it uses).
    ``cpu_seconds``: RLIMIT_CPU instead of the limits' (a warm sandbox's stub lowers it at hand-over).
    """
    rlimits = {
        "core": 0,
        "cpu": max(1, math.ceil(limits.cpu_seconds if cpu_seconds is None else cpu_seconds)),
        "fsize": max(1, limits.disk_mb) * 1024 * 1024,
    }
    if cgroup is None:  # no cgroups: processes and memory are capped by rlimits instead
        rlimits["nproc"] = max(limits.pids, 1) + BWRAP_PIDS
        if data_rlimit:
            rlimits["data"] = limits.memory_mb * 1024 * 1024
    return rlimits


def shm_bytes(limits: Limits) -> int:
    """Size of a run's ``/dev/shm`` tmpfs: ``min(disk_mb, 64)`` MB (POSIX shm, multiprocessing locks)."""
    return max(1, min(limits.disk_mb, SHM_MAX_MB)) * 1024 * 1024


def unsized_tmpfs(args: list[str]) -> list[str]:
    """Writable tmpfs mounts of a bwrap argv without ``--size`` (``--dev`` too, unless remounted ro)."""
    unsized: dict[str, bool] = {}
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--tmpfs":
            unsized[args[i + 1]] = i < 2 or args[i - 2] != "--size" and args[i - 4 : i - 3] != ["--size"]
        elif arg == "--dev":
            unsized[args[i + 1]] = True
        elif arg == "--remount-ro" and args[i + 1] in unsized:
            unsized[args[i + 1]] = False
    return [path for path, bad in unsized.items() if bad]
