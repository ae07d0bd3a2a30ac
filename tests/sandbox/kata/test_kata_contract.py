"""The shared conformance suite's contract tests that make sense against the fake API.

They run the real backend, the real client, the real runner and real programs (in the fake
kubelet's bubblewrap). Not here: the isolation probes (they would test bubblewrap, not Kata),
memory, pids and CPU caps (the fake enforces no cgroup limits; OOM and deadlines are played back in
``test_kata_runs.py``), TypeScript (no Deno in the fake's "image"), and the checks that look for a
run's host processes by the local backends' naming (``test_kata_runs.py`` has its own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.base import EndReason, Limits, Sandbox
from sandbox.kata import KataSandbox
from tests.sandbox.kata.conftest import kata_settings
from tests.sandbox.kata.fake_kube import FakeKube

try:  # the suite is being renamed to tests/sandbox/conformance.py
    from tests.sandbox import conformance as contract  # type: ignore[attr-defined]
except ImportError:
    from tests.sandbox import test_conformance as contract


@pytest.fixture
async def sandbox(fake_kube: FakeKube, tmp_path: Path, needs_bwrap: None) -> AsyncIterator[Sandbox]:
    """Overrides the suite's ``sandbox``: the Kata backend on the fake API (checked after each test)."""
    async with await KataSandbox.open(kata_settings(fake_kube.kubeconfig(tmp_path / "kc"))) as box:
        yield box


async def test_sleep_past_timeout(sandbox: Sandbox) -> None:
    """The suite's version, less the pod's start (``boot_s``), which a remote backend cannot bound."""
    result = await contract.run_py(sandbox, "import time\ntime.sleep(30)\n", limits=Limits(wall_seconds=1))
    assert result.reason is EndReason.TIMEOUT
    assert 0.9 <= result.duration_s - result.boot_s < 3.5, result


test_exit_codes_stdout_stderr = contract.test_exit_codes_stdout_stderr
test_stdin_and_args = contract.test_stdin_and_args
test_files_in_and_out = contract.test_files_in_and_out
test_command_runs_in_scratch = contract.test_command_runs_in_scratch
test_filling_the_disk_stops_at_the_cap = contract.test_filling_the_disk_stops_at_the_cap
test_huge_output_is_truncated_with_bounded_memory = contract.test_huge_output_is_truncated_with_bounded_memory
test_one_big_write_arrives_whole_or_flagged = contract.test_one_big_write_arrives_whole_or_flagged
test_streaming_yields_chunks_in_order = contract.test_streaming_yields_chunks_in_order
test_concurrent_runs = contract.test_concurrent_runs
test_too_long_argument_list_is_a_bad_request = contract.test_too_long_argument_list_is_a_bad_request
test_bad_requests_raise = contract.test_bad_requests_raise
test_limits_above_the_server_maximum_are_refused = contract.test_limits_above_the_server_maximum_are_refused
test_server_environment_does_not_leak = contract.test_server_environment_does_not_leak
