"""The one seccomp policy of every sandbox, as data: which calls fail, with which errno, on which args.

Why a table: the bubblewrap backend compiles it with ``pyseccomp`` (:mod:`sandbox.host.seccomp`) and the
gVisor backend writes it into the OCI profile the Sentry enforces (:func:`sandbox.host.oci.seccomp_profile`).
Both are built from :func:`policy` only, so a call refused on one backend cannot stay open on the
other (the OCI profile once copied the deny list but not the ``ENOSYS`` list, and ``io_uring_setup``
worked under gVisor). A unit test compares the two compiled forms.

Why these calls: the kernel's attack surface is the real boundary of a namespace sandbox, so calls a
program never needs (mounting, tracing, loading BPF or kernel modules, keyrings, new namespaces,
io_uring, ...) fail. Without network, only ``AF_UNIX`` sockets may be created. ``clone3`` returns
``ENOSYS`` because its flags live in memory seccomp cannot inspect; libc then falls back to
``clone``, whose namespace flags are checked. The one deliberate difference: this runsc ignores
``errnoRet`` (every denial is ``EPERM``), and glibc falls back from ``clone3`` only on ``ENOSYS``,
so rules marked ``needs_errno`` are left out of the OCI profile (namespaces made with ``clone3``
under gVisor stay inside the Sentry).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DENIED_SYSCALLS",
    "ENOSYS_SYSCALLS",
    "ZYGOTE_ALLOWED",
    "ArgCheck",
    "Rule",
    "policy",
    "zygote_policy",
]

DENIED_SYSCALLS: tuple[str, ...] = (
    # filesystems and namespaces
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "name_to_handle_at",
    "open_by_handle_at",
    "quotactl",
    "quotactl_fd",
    # tracing other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # kernel attack surface
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "uselib",
    "_sysctl",
    "lookup_dcookie",
    "fanotify_init",
    "nfsservctl",
    "vm86",
    "vm86old",
    "modify_ldt",
    "iopl",
    "ioperm",
    # host state
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "vhangup",
    "sethostname",
    "setdomainname",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "mbind",
    "migrate_pages",
    "move_pages",
    "set_mempolicy",
)
# What a warm key's fork server (:mod:`sandbox.warm.zygote`) may still do, so its children can make
# their own namespaces and mounts; each child loads the full :func:`policy` before its program runs.
ZYGOTE_ALLOWED: tuple[str, ...] = ("unshare", "mount")
# Fail as "not implemented": libc falls back (clone3 -> clone) or the program does without (io_uring).
ENOSYS_SYSCALLS: tuple[str, ...] = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")

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
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_AF_UNIX, _AF_PACKET, _SOCK_RAW, _SOCK_TYPE_MASK = 1, 17, 3, 0xF


@dataclass(frozen=True)
class ArgCheck:
    """A condition on one syscall argument: ``eq`` / ``ne`` compare it, ``masked_eq`` tests ``arg & mask``."""

    index: int
    op: Literal["eq", "ne", "masked_eq"]
    value: int
    mask: int = 0  # masked_eq only


@dataclass(frozen=True)
class Rule:
    """Syscall ``name`` fails with ``errno`` (when ``arg`` holds, if given); everything else is allowed.

    ``needs_errno``: the rule only makes sense with its exact errno (see the module docstring).
    """

    name: str
    errno: int
    arg: ArgCheck | None = None
    needs_errno: bool = False


def policy(*, network: bool) -> tuple[Rule, ...]:
    """Return every denial of a run with or without network (default: allow)."""
    rules = [Rule(name, errno.EPERM) for name in DENIED_SYSCALLS]
    rules += [Rule(name, errno.ENOSYS, needs_errno=name == "clone3") for name in ENOSYS_SYSCALLS]
    rules += [Rule("clone", errno.EPERM, ArgCheck(0, "masked_eq", flag, flag)) for flag in _NS_FLAGS]
    rules += [
        Rule("personality", errno.EPERM, ArgCheck(0, "masked_eq", bit, bit)) for bit in _PERSONALITY_BAD_BITS
    ]
    rules += [
        Rule("ioctl", errno.EPERM, ArgCheck(1, "masked_eq", request, 0xFFFFFFFF))
        for request in (_TIOCSTI, _TIOCLINUX)
    ]
    if network:
        rules.append(Rule("socket", errno.EAFNOSUPPORT, ArgCheck(0, "eq", _AF_PACKET)))
        rules.append(Rule("socket", errno.EPERM, ArgCheck(1, "masked_eq", _SOCK_RAW, _SOCK_TYPE_MASK)))
    else:
        rules.append(Rule("socket", errno.EAFNOSUPPORT, ArgCheck(0, "ne", _AF_UNIX)))
        rules.append(Rule("socketpair", errno.EAFNOSUPPORT, ArgCheck(0, "ne", _AF_UNIX)))
    return tuple(rules)


def zygote_policy() -> tuple[Rule, ...]:
    """The denials of a fork server: a run's without network, minus :data:`ZYGOTE_ALLOWED`.

    Why it still refuses the rest (``ptrace``, ``process_vm_*``, ``pidfd_getfd``, ``setns``, keyrings,
    ``bpf``, ``perf_event_open``, new namespaces through ``clone``, ...): the zygote never needs them,
    and a run that escaped into it must find no more than a run finds.
    """
    return tuple(rule for rule in policy(network=False) if rule.name not in ZYGOTE_ALLOWED)
