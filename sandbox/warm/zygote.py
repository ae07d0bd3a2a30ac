"""A fork server ("zygote") for one warm key: its children become single-use, isolated Python runs.

Runs *inside* a bubblewrap sandbox built like a warm sandbox's (:mod:`sandbox.host.warm_fork`),
stdlib only, and never runs program code itself. Started as ``python3 -s -B zygote.py HOST_FD
DISK_MB SCOPE MODULE...``: ``HOST_FD`` a SOCK_SEQPACKET socket to the host, ``DISK_MB`` the key's
scratch size, ``SCOPE`` ``landlock`` (a Landlock scope keeps concurrent runs' abstract sockets and
signals apart) or ``netns`` (each run gets its own empty network namespace instead).

1. The host's first datagram is the platform's seccomp BPF for runs. The zygote imports the
   modules (as :mod:`sandbox.warm.python_stub` does) and writes the ready line on stdout.
2. Per datagram ``fork`` (ancillary: a control socket, the run's stdin, stdout, stderr and a status
   pipe) it forks a child, which says ``forked`` on the control socket (the host learns its host
   pid from the socket's credentials and moves it into the run's cgroup) and waits for ``go``;
   it keeps that socket, and its pid, until the host closes it after the run.
3. Then the child isolates itself: new user (the zygote's uid mapped to itself), mount, pid, ipc
   and uts namespaces (and net, with ``netns``), then forks the program's pid 1, waits for it and
   writes its exit status (``128 + signal`` when killed) to the status pipe. Pid 1 mounts a fresh
   size-capped tmpfs on ``/sandbox`` (``/tmp`` points into it), a fresh ``/dev/shm``, ``/proc`` and
   ``/dev/pts``, closes every other fd, drops every capability (bounding set included), sets ``no_new_privs``,
   loads the run's seccomp filter and the Landlock scope, forgets the zygote's own modules, and
   becomes the program through :func:`sandbox.warm.python_stub.run` (the warm stub's protocol on
   stdin, and its cold-run look: traceback, ``sys.orig_argv``, exit codes, RLIMIT_CPU from now).

An empty datagram (the host closed its end) ends the zygote. Any failure before the program runs
writes ``agentic-sandbox: setup failed: ...`` to the run's stderr and exits 125.
"""

import sys

_COLD = set(sys.modules)  # before our own imports: what a program may find in sys.modules

import array  # noqa: E402
import ctypes  # noqa: E402
import fcntl  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

stub = importlib.import_module("python_stub")  # beside this file (sys.path[0]), staged with it
stub.OWN_FILES.add(sys._getframe().f_code.co_filename)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 24, 22, 2
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LANDLOCK_SCOPE = 0x1 | 0x2  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL (ABI >= 6)
SCRATCH, WORK, TMP = "/sandbox", "/sandbox/work", "/sandbox/tmp"
SHM_MAX_MB = 64
FDS = 5  # control socket, stdin, stdout, stderr, status

libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.syscall.restype = ctypes.c_long


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    kind = None if fstype is None else fstype.encode()
    options = None if data is None else data.encode()
    _check(libc.mount(source.encode(), target.encode(), kind, flags, options), f"mount {target}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _drop_caps() -> None:
    """Every capability of this user namespace goes: bounding, ambient, effective, permitted, inheritable."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    _check(libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")


def _landlock_scope() -> None:
    """No connecting to abstract Unix sockets, nor signalling, outside this run's own processes."""
    attr = (ctypes.c_uint64 * 3)(0, 0, LANDLOCK_SCOPE)  # handled fs, handled net, scoped
    fd = libc.syscall(444, ctypes.byref(attr), ctypes.sizeof(attr), 0)  # landlock_create_ruleset
    _check(fd, "landlock_create_ruleset")
    try:
        _check(libc.syscall(446, fd, 0), "landlock_restrict_self")
    finally:
        os.close(fd)


def _seccomp(bpf: bytes) -> None:
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


def _setup_failed(exc: BaseException, status: int = 3) -> None:
    try:
        os.write(2, f"agentic-sandbox: setup failed: {exc}\n".encode())
        if status >= 0:
            os.write(status, b"125\n")
    finally:
        os._exit(125)


def _pid1(bpf: bytes, keep: set[str], disk_mb: int, scope: str, own_args: int) -> None:
    """Pid 1 of the run's namespaces: finish the isolation, then become the program (never returns)."""
    try:
        os.close(4)  # the control socket stays with our parent
        _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        _mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,mode=0755")
        os.mkdir(WORK, 0o755)
        os.mkdir(TMP)
        os.chmod(TMP, 0o1777)
        shm = f"size={min(disk_mb, SHM_MAX_MB)}m,mode=1777"
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, shm)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        # A devpts of its own: the zygote's (bwrap's) is shared by every child, and a sibling's
        # terminals, same uid, could be opened there. ``/dev/ptmx`` points into it.
        _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
        try:  # this user namespace may make no more (the seccomp filter refuses it as well)
            _write("/proc/sys/user/max_user_namespaces", "0")
        except OSError:
            pass
        os.chdir(WORK)  # the zygote's scratch dir is hidden now, also as cwd
        _drop_caps()
        _seccomp(bpf)
        if scope == "landlock":
            _landlock_scope()
        for name in set(sys.modules) - keep:  # the program finds the modules a cold start has
            del sys.modules[name]
    except BaseException as exc:
        _setup_failed(exc)
    stub.run(3, own_args, keep)


def _unshare(scope: str) -> None:
    """New user (our uid mapped to itself), mount, pid, ipc, uts (and net) namespaces for this process."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if scope == "netns":
        flags |= CLONE_NEWNET
    _check(libc.unshare(flags), "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _probe(scope: str) -> None:
    """Check once that this kernel lets a child make a run's namespaces and mounts (else: fail the start)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _unshare(scope)
            inner = os.fork()
            if inner == 0:
                try:
                    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
                    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
                    _mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
                    _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance")
                    os._exit(0)
                except BaseException as exc:
                    os.write(2, f"agentic-sandbox: setup failed: {exc}\n".encode())
                    os._exit(1)
            code = os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1])
        except BaseException as exc:
            os.write(2, f"agentic-sandbox: setup failed: {exc}\n".encode())
        finally:
            os._exit(code)
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        _setup_failed(OSError("this kernel refuses a forked run its namespaces or mounts"), -1)


def _child(fds: list[int], bpf: bytes, keep: set[str], disk_mb: int, scope: str, own_args: int) -> None:
    """The forked child: wait for the host, new namespaces, pid 1 runs the program (never returns)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    ctl, stdin, out, err, status = fds
    try:
        control = socket.socket(fileno=ctl)
        control.send(b"forked")  # the host reads our host pid from the credentials, then moves us
        if control.recv(16) != b"go":
            os._exit(0)  # the host gave the run up
        ctl = control.detach()  # its fd moves below: the object must not close a number reused by then
        _unshare(scope)
        mine = (stdin, out, err, status, ctl)
        copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in mine]
        for target, fd in enumerate(copies):  # above every fd of ours first, then into place
            os.dup2(fd, target, inheritable=target < 3)
        os.closerange(5, 65536)  # the host socket, the zygote's pipes, the run's fd copies
    except BaseException as exc:
        _setup_failed(exc, status)
    pid = os.fork()
    if pid == 0:
        _pid1(bpf, keep, disk_mb, scope, own_args)
    for fd in (0, 1, 2):
        os.close(fd)
    _, wait_status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else 128 + os.WTERMSIG(wait_status)
    try:  # pid 1 may have written it already (right before it exited): the host reads the first
        os.write(3, b"%d\n" % code)
        os.read(4, 1)  # stay (and keep our pid) until the host is done with us: it kills us by pid
    except OSError:
        pass
    os._exit(code)


def serve() -> None:
    """Answer the host's requests until it closes its end."""
    host_fd, disk_mb, scope, names = int(sys.argv[1]), max(1, int(sys.argv[2])), sys.argv[3], sys.argv[4:]
    host = socket.socket(fileno=host_fd)
    bpf = host.recv(1 << 20)
    if not bpf or len(bpf) % 8:
        _setup_failed(ValueError(f"a seccomp program of {len(bpf)} bytes"))
    _probe(scope)
    before = set(sys.modules)
    _, added = stub.preload(names)
    keep = _COLD | (set(sys.modules) - before) | {"__main__"}
    os.write(1, b"\0agentic-warm-ready " + " ".join(added).encode() + b"\n")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our children; the host watches them
    own_args = 4 + len(names)
    while True:
        fds = array.array("i")
        data, ancdata, _, _ = host.recvmsg(64, socket.CMSG_SPACE(FDS * fds.itemsize))
        if not data:
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if data == b"fork" and len(fds) == FDS:
            try:
                if os.fork() == 0:
                    _child(list(fds), bpf, keep, disk_mb, scope, own_args)
            except OSError:  # EAGAIN: the host sees the control socket close and gives up on this one
                pass
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    serve()
