"""The conformance suite's contract, where it applies, run against the Unikraft backend and the fake.

Which cases and why: result shape, exit codes, stdout / stderr, stdin and args, files in and out,
commands in the scratch dir, truncation (with bounded memory on our side), a single big write,
timeouts, streaming order, concurrency, bad requests and the memory cap (a consumer leaving early
is in ``test_runs.py``: the shared case looks for host processes by a local naming scheme).
Not here: the isolation probes (host files, /proc, host listeners, syscalls, pids, disk): the fake
runs commands as host processes, so they would test the fake, not Unikraft, and Unikraft's
isolation is a VM boundary the fake cannot have. After each case the ``fake`` fixture checks that
no instance is left and that every request body matched the SDK's models.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from types import ModuleType

import pytest

from sandbox.backends.unikraft import UnikraftSandbox


def _contract() -> ModuleType:
    """The shared conformance module (imported as a module: its tests must not be collected here)."""
    for name in ("tests.sandbox.conformance", "tests.sandbox.test_conformance"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise RuntimeError("the sandbox conformance suite is missing")


CONTRACT = _contract()
CASES = [
    "test_exit_codes_stdout_stderr",
    "test_stdin_and_args",
    "test_files_in_and_out",
    "test_command_runs_in_scratch",
    "test_huge_output_is_truncated_with_bounded_memory",
    "test_one_big_write_arrives_whole_or_flagged",
    "test_sleep_past_timeout",
    "test_streaming_yields_chunks_in_order",
    "test_concurrent_runs",
    "test_bad_requests_raise",
    "test_memory_cap_ends_with_oom",
]


@pytest.mark.parametrize("case", CASES)
async def test_contract_case(case: str, ukc: UnikraftSandbox) -> None:
    test: Callable[[UnikraftSandbox], Awaitable[None]] = getattr(CONTRACT, case)
    await test(ukc)
