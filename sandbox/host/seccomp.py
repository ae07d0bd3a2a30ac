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

from sandbox.host.seccomp_policy import DENIED_SYSCALLS, ArgCheck, policy

__all__ = ["DENIED_SYSCALLS", "bpf_fd", "bpf_program", "build_filter"]

logger = logging.getLogger(__name__)

_OPS = {"eq": sc.EQ, "ne": sc.NE, "masked_eq": sc.MASKED_EQ}


def _arg(check: ArgCheck) -> sc.Arg:
    if check.op == "masked_eq":
        return sc.Arg(check.index, sc.MASKED_EQ, check.mask, check.value)
    return sc.Arg(check.index, _OPS[check.op], check.value)


def build_filter(*, network: bool) -> sc.SyscallFilter:
    """Return the filter (default allow, the denials of :func:`sandbox.host.seccomp_policy.policy`)."""
    filt = sc.SyscallFilter(sc.ALLOW)
    for rule in policy(network=network):
        args = (_arg(rule.arg),) if rule.arg is not None else ()
        try:
            filt.add_rule(sc.ERRNO(rule.errno), rule.name, *args)
        except (ValueError, RuntimeError, OSError) as exc:  # syscall unknown on this architecture
            logger.debug("seccomp: skipping %s: %s", rule.name, exc)
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
