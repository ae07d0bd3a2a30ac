"""The seccomp filter applied to every program of the bubblewrap backend (built with ``pyseccomp``).

What is refused and why is :mod:`sandbox.host.seccomp_policy` (shared with the gVisor OCI profile);
this module only compiles that table.

The filter is compiled to BPF once per network setting (:func:`bpf_program`) and handed to
bubblewrap with ``--seccomp FD``, so bwrap itself keeps the syscalls it needs to build the sandbox.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile

import pyseccomp as sc

from sandbox.host.seccomp_policy import DENIED_SYSCALLS, ArgCheck, Rule, policy, zygote_policy

__all__ = ["DENIED_SYSCALLS", "bpf_fd", "bpf_program", "build_filter"]

logger = logging.getLogger(__name__)

_OPS = {"eq": sc.EQ, "ne": sc.NE, "masked_eq": sc.MASKED_EQ}


def _arg(check: ArgCheck) -> sc.Arg:
    if check.op == "masked_eq":
        return sc.Arg(check.index, sc.MASKED_EQ, check.mask, check.value)
    return sc.Arg(check.index, _OPS[check.op], check.value)


def build_filter(*, network: bool, rules: tuple[Rule, ...] | None = None) -> sc.SyscallFilter:
    """Return the filter (default allow, the denials of :func:`sandbox.host.seccomp_policy.policy`).

    ``rules``: these denials instead (a fork server's, :func:`~sandbox.host.seccomp_policy.zygote_policy`).
    """
    filt = sc.SyscallFilter(sc.ALLOW)
    for rule in policy(network=network) if rules is None else rules:
        args = (_arg(rule.arg),) if rule.arg is not None else ()
        try:
            filt.add_rule(sc.ERRNO(rule.errno), rule.name, *args)
        except (ValueError, RuntimeError, OSError) as exc:  # syscall unknown on this architecture
            logger.debug("seccomp: skipping %s: %s", rule.name, exc)
    return filt


@functools.cache
def bpf_program(network: bool, zygote: bool = False) -> bytes:
    """Return the compiled BPF program for ``network`` (or a fork server's; computed once per process)."""
    filt = build_filter(network=network, rules=zygote_policy() if zygote else None)
    with tempfile.TemporaryFile() as fh:
        filt.export_bpf(fh)
        fh.seek(0)
        data = fh.read()
    if not data or len(data) % 8:
        raise RuntimeError(f"seccomp export produced {len(data)} bytes, not a BPF program")
    logger.debug("seccomp BPF (network=%s): %d instructions", network, len(data) // 8)
    return data


def bpf_fd(network: bool, zygote: bool = False) -> int:
    """Return a fresh readable fd holding the BPF program (bwrap reads it to EOF; caller closes)."""
    data = bpf_program(network, zygote)
    fd = os.memfd_create("agentic-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
