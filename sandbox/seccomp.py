"""The seccomp filter applied to every sandboxed program (built with ``pyseccomp``).

Why a deny list on top of namespaces: the kernel's attack surface is the real boundary of a
namespace sandbox, so syscalls a program never needs (mounting, tracing, loading BPF or kernel
modules, keyrings, new namespaces, io_uring, ...) fail with ``EPERM``. Without network, only
``AF_UNIX`` sockets may be created. ``clone3`` returns ``ENOSYS`` because its flags live in memory
seccomp cannot inspect; libc then falls back to ``clone``, whose namespace flags we do check.

The filter is compiled to BPF once per network setting (:func:`bpf_program`) and handed to
bubblewrap with ``--seccomp FD``, so bwrap itself keeps the syscalls it needs to build the sandbox.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import tempfile

import pyseccomp as sc

__all__ = ["DENIED_SYSCALLS", "bpf_fd", "bpf_program", "build_filter"]

logger = logging.getLogger(__name__)

DENIED_SYSCALLS: tuple[str, ...] = (
    # filesystems and namespaces
    "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "name_to_handle_at", "open_by_handle_at", "quotactl", "quotactl_fd",
    # tracing other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # kernel attack surface
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module", "uselib", "_sysctl", "lookup_dcookie",
    "fanotify_init", "nfsservctl", "vm86", "vm86old", "modify_ldt", "iopl", "ioperm",
    # host state
    "reboot", "swapon", "swapoff", "acct", "syslog", "vhangup", "sethostname", "setdomainname",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "mbind", "migrate_pages",
    "move_pages", "set_mempolicy",
)  # fmt: skip

_ENOSYS_SYSCALLS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")

# clone(2) flags that create namespaces (x86-64: flags are argument 0).
_NS_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
# personality(2) bits that weaken the process (ASLR off, executable data, page zero mapping).
_PERSONALITY_BAD_BITS = (0x0040000, 0x0100000, 0x0400000)
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
_AF_UNIX = 1
_AF_NETLINK = 16
_AF_PACKET = 17
_SOCK_RAW = 3
_SOCK_TYPE_MASK = 0xF


def _deny(filt: sc.SyscallFilter, action: int, name: str, *args: sc.Arg) -> None:
    try:
        filt.add_rule(action, name, *args)
    except (ValueError, RuntimeError, OSError) as exc:  # syscall unknown on this architecture
        logger.debug("seccomp: skipping %s: %s", name, exc)


def build_filter(*, network: bool) -> sc.SyscallFilter:
    """Return the filter (default allow, explicit denials) for a run with or without network."""
    filt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        _deny(filt, eperm, name)
    for name in _ENOSYS_SYSCALLS:
        _deny(filt, sc.ERRNO(errno.ENOSYS), name)
    for flag in _NS_FLAGS:
        _deny(filt, eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for bit in _PERSONALITY_BAD_BITS:
        _deny(filt, eperm, "personality", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    for request in (_TIOCSTI, _TIOCLINUX):
        _deny(filt, eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    noaf = sc.ERRNO(errno.EAFNOSUPPORT)
    if network:
        _deny(filt, noaf, "socket", sc.Arg(0, sc.EQ, _AF_PACKET))
        _deny(filt, eperm, "socket", sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, _SOCK_RAW))
    else:
        _deny(filt, noaf, "socket", sc.Arg(0, sc.NE, _AF_UNIX))
        _deny(filt, noaf, "socketpair", sc.Arg(0, sc.NE, _AF_UNIX))
    return filt


@functools.cache
def bpf_program(network: bool) -> bytes:
    """Return the compiled BPF program for ``network`` (computed once per process)."""
    filt = build_filter(network=network)
    with tempfile.TemporaryFile() as fh:
        filt.export_bpf(fh)
        fh.seek(0)
        data = fh.read()
    if not data or len(data) % 8:
        raise RuntimeError(f"seccomp export produced {len(data)} bytes, not a BPF program")
    logger.debug("seccomp BPF (network=%s): %d instructions", network, len(data) // 8)
    return data


def bpf_fd(network: bool) -> int:
    """Return a fresh readable fd holding the BPF program (bwrap reads it to EOF; caller closes)."""
    data = bpf_program(network)
    fd = os.memfd_create("agentic-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
