"""The local seccomp filter and the gVisor OCI profile are compiled from one table and say the same."""

from __future__ import annotations

import re
import tempfile

import pytest

from sandbox.host.oci import seccomp_profile
from sandbox.host.seccomp import build_filter
from sandbox.host.seccomp_policy import policy

# (syscall, errno, argument index or None, comparison) -- what each compiled form refuses.
Denial = tuple[str, int, int | None]


def _local_denials(network: bool) -> set[tuple[str, int]]:
    """Read (syscall, errno) pairs back from libseccomp's pseudo filter code of the real filter."""
    with tempfile.TemporaryFile() as fh:
        build_filter(network=network).export_pfc(fh)
        fh.seek(0)
        pfc = fh.read().decode()
    found: set[tuple[str, int]] = set()
    name = None
    for line in pfc.splitlines():
        if m := re.search(r'filter for syscall "([^"]+)"', line):
            name = m.group(1)
        elif (m := re.search(r"action ERRNO\((\d+)\)", line)) and name is not None:
            found.add((name, int(m.group(1))))
        elif "default action" in line:
            name = None
    return found


def _oci_denials(network: bool) -> set[tuple[str, int]]:
    profile = seccomp_profile(network=network)
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    return {
        (name, rule["errnoRet"])
        for rule in profile["syscalls"]
        for name in rule["names"]
        if rule["action"] == "SCMP_ACT_ERRNO"
    }


@pytest.mark.parametrize("network", [False, True])
def test_oci_profile_and_local_filter_refuse_the_same_calls(network: bool) -> None:
    local, oci = _local_denials(network), _oci_denials(network)
    # The only documented difference: rules that need their exact errno (runsc answers EPERM).
    only_local = {(r.name, r.errno) for r in policy(network=network) if r.needs_errno}
    assert only_local == {("clone3", 38)}
    assert local - only_local == oci
    assert {("io_uring_setup", 38), ("io_uring_enter", 38), ("mount", 1), ("personality", 1)} <= oci


@pytest.mark.parametrize("network", [False, True])
def test_argument_checks_match(network: bool) -> None:
    """Same conditions, not only the same names (clone namespace flags, socket families, ioctl)."""
    rules = [r for r in policy(network=network) if r.arg is not None]
    oci = [r for r in seccomp_profile(network=network)["syscalls"] if "args" in r]
    assert len(rules) == len(oci)
    for rule, entry in zip(rules, oci, strict=True):
        assert rule.arg is not None
        (arg,) = entry["args"]
        assert entry["names"] == [rule.name] and arg["index"] == rule.arg.index
        if rule.arg.op == "masked_eq":
            assert (arg["op"], arg["value"], arg["valueTwo"]) == (
                "SCMP_CMP_MASKED_EQ",
                rule.arg.mask,
                rule.arg.value,
            )
        else:
            assert arg["value"] == rule.arg.value
