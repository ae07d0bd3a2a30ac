"""The warm pool's policy: cold fallback, demand, idle expiry, the idle memory budget, close, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from sandbox.base import Limits, RunRequest, Sandbox
from sandbox.config import SandboxSettings, WarmSettings
from sandbox.registry import create_sandbox, open_sandbox, verdict
from sandbox.warm import WarmPool
from server.metrics import InstrumentedSandbox
from tests.support.leftovers import descendants, our_cgroups, our_mounts

pytestmark = pytest.mark.privileged

LIBSET_BUILT = (SandboxSettings().data_dir / "libsets" / "datascience").is_dir()


def settings(**warm: object) -> SandboxSettings:
    return SandboxSettings(warm=WarmSettings(**{"prewarm": [], **warm}))  # type: ignore[arg-type]


async def available(name: str) -> Sandbox:
    backend = create_sandbox(SandboxSettings(), name)
    problem = verdict(await backend.preflight())
    if problem is not None:
        pytest.skip(f"backend {name!r} unavailable: {problem}")
    return backend


@pytest.fixture
async def local() -> AsyncIterator[Callable[..., WarmPool]]:
    """Makes warm pools over the local backend with the given warm settings; closes them after."""
    await available("local")
    made: list[WarmPool] = []

    def make(**warm: object) -> WarmPool:
        chosen = settings(**warm)
        made.append(WarmPool(create_sandbox(chosen, "local"), chosen))
        return made[-1]

    yield make
    for pool in made:
        await pool.close()


def py(code: str, **kwargs: object) -> RunRequest:
    files = {**dict(kwargs.pop("files", {})), "main.py": code}  # type: ignore[call-overload]
    return RunRequest(files=files, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# --- cold fallback --------------------------------------------------------------------------------


async def test_open_sandbox_puts_the_pool_in_front_unless_disabled() -> None:
    await available("local")
    on = await open_sandbox(settings(), "local")
    off = await open_sandbox(SandboxSettings(warm=WarmSettings(enabled=False)), "local")
    try:
        assert isinstance(on, WarmPool) and not isinstance(off, WarmPool)
        for box in (on, off):
            result = await box.run(py("print(6 * 7)"))
            assert result.ok and result.stdout == "42\n"
    finally:
        await on.close()
        await off.close()
        await on.close()  # idempotent


async def test_an_empty_pool_runs_cold(local: Callable[..., WarmPool]) -> None:
    pool = await local(max_idle_per_key=0).open()
    result = await pool.run(py("print('cold')"))
    assert result.ok and result.stdout == "cold\n" and result.backend == "local"
    stats = pool.stats()
    assert stats.hits == 0 and stats.misses == {"empty": 1} and stats.idle == 0 and stats.starts == 0


async def test_runs_no_warm_sandbox_can_serve_run_cold(local: Callable[..., WarmPool]) -> None:
    pool = await local().open()
    lib = {"lib/extra.py": "VALUE = 'from PYTHONPATH'\n"}
    requests = [
        RunRequest(command=("/bin/sh", "-c", "echo command")),
        py("print('network')", network=True, limits=Limits(wall_seconds=20)),
        py("import extra\nprint(extra.VALUE)", files=lib, env={"PYTHONPATH": "/sandbox/work/lib"}),
        RunRequest(
            files={"main.ts": "console.log('ts env')"}, language="typescript", entry="main.ts", env={"A": "b"}
        ),
    ]
    for request in requests:
        assert await pool.ready(request, timeout_s=1) is False
    results = [await pool.run(request) for request in requests]
    assert [r.stdout for r in results] == ["command\n", "network\n", "from PYTHONPATH\n", "ts env\n"]
    assert pool.stats().cold == len(requests) and pool.stats().hits == 0


@pytest.mark.skipif(
    not LIBSET_BUILT, reason="the datascience library set is not built (agentic libsets build)"
)
async def test_a_file_shadowing_a_preloaded_module_runs_cold(local: Callable[..., WarmPool]) -> None:
    pool = await local().open()
    request = py(
        "import pandas\nprint(pandas.VALUE)",
        files={"pandas.py": "VALUE = 'mine'\n"},
        library_set="datascience",
    )
    assert await pool.ready(request)
    result = await pool.run(request)
    assert result.ok and result.stdout == "mine\n", result.stderr  # the run's pandas.py, as cold
    stats = pool.stats()
    assert stats.misses == {"shadowed": 1} and stats.hits == 0 and stats.idle == 1  # still there for others
    other = py("import pandas\nprint(pandas.__version__ > '2')", library_set="datascience")
    assert (await pool.run(other)).stdout == "True\n"
    assert pool.stats().hits == 1


@pytest.mark.skipif(
    not LIBSET_BUILT, reason="the datascience library set is not built (agentic libsets build)"
)
async def test_a_sandbox_that_cannot_take_the_runs_limits_runs_it_cold(
    local: Callable[..., WarmPool],
) -> None:
    """A waiting interpreter with numpy and pandas holds more than a 32 MB cap: that run goes cold.

    A forked one holds its zygote's pages shared (charged to the zygote's cgroup): it takes the run.
    """
    pool = await local(fork=False).open()
    request = py("print('small')", library_set="datascience", limits=Limits(memory_mb=32))
    assert await pool.ready(request)
    result = await pool.run(request)
    assert result.ok and result.stdout == "small\n", result
    assert pool.stats().misses == {"unusable": 1} and pool.stats().hits == 0
    forked = await local(fork=True).open()
    assert await forked.ready(request)
    result = await forked.run(request)
    assert result.ok and result.stdout == "small\n", result
    assert forked.stats().hits == 1 and not forked.stats().misses, forked.stats()


async def test_a_run_that_finds_its_key_starting_waits_for_that_start(local: Callable[..., WarmPool]) -> None:
    """No idle sandbox, one starting: the run takes that one, not a cold start of its own."""
    pool = await local().open()
    result = await pool.run(py("print('waited')"))  # the key's first run: its start begins now
    assert result.ok and result.stdout == "waited\n", result
    stats = pool.stats()
    assert (stats.hits, stats.waited, stats.misses, stats.cold) == (1, 1, {}, 0), stats


async def test_a_run_waiting_for_a_failing_start_runs_cold(local: Callable[..., WarmPool]) -> None:
    pool = await local(start_timeout_s=0.001).open()
    result = await pool.run(py("print('cold after all')"))
    assert result.ok and result.stdout == "cold after all\n", result
    stats = pool.stats()
    assert stats.hits == 0 and stats.misses == {"empty": 1} and stats.start_failures >= 1, stats


async def test_a_run_cancelled_while_it_waits_leaves_the_sandbox_to_the_pool(
    local: Callable[..., WarmPool],
) -> None:
    pool = await local(max_idle_per_key=1).open()
    waiting = asyncio.ensure_future(pool.run(py("print('never')")))
    await asyncio.sleep(0)  # the run is in: no sandbox idle, it waits for the one starting
    assert pool.stats().keys[0].starting >= 1 and not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(lambda: pool.stats().idle == 1)  # kept for the next run, not lost or leaked
    assert (await pool.run(py("print('next')"))).stdout == "next\n"
    stats = pool.stats()
    assert stats.hits == 1 and stats.waited == 0 and not stats.misses, stats


# --- sizing ---------------------------------------------------------------------------------------


async def test_a_prewarm_key_is_warm_from_open_and_refilled(local: Callable[..., WarmPool]) -> None:
    pool = await local(prewarm=["python/base/light"], min_idle=2).open()
    await eventually(lambda: pool.stats().idle == 2)
    for _ in range(3):
        assert (await pool.run(py("print(1)"))).stdout == "1\n"
    await eventually(lambda: pool.stats().idle >= 2)
    assert pool.stats().hits >= 1 and pool.stats().keys[0].label == "python/base/64MB"


async def test_demand_grows_a_key_up_to_its_maximum(local: Callable[..., WarmPool]) -> None:
    pool = await local(max_idle_per_key=3).open()
    request = py("import time\ntime.sleep(0.3)\n")
    for _ in range(3):  # three runs at once, a few times: the key wants three
        await asyncio.gather(*(pool.run(request) for _ in range(3)))
    (key,) = pool.stats().keys
    assert key.target == 3, key
    await eventually(lambda: pool.stats().idle == 3)
    await asyncio.sleep(1.5)  # never more than the maximum
    assert pool.stats().idle == 3


async def test_idle_sandboxes_expire(local: Callable[..., WarmPool]) -> None:
    pool = await local(idle_ttl_s=1.0).open()
    assert await pool.ready(py("pass"))
    helpers = getattr(pool.inner, "warm_helper_pids", set)  # fork servers: the backend's, not idle ones
    pids = (pool.idle_pids() or set()) - set(helpers())
    assert pids
    await eventually(lambda: pool.stats().idle == 0 and pool.stats().expired == 1, timeout_s=10)
    await eventually(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids))
    await asyncio.sleep(1.5)  # no demand left: not replaced, and the key is forgotten
    assert pool.stats().idle == 0 and pool.stats().keys == ()


async def test_idle_memory_stays_within_its_budget(local: Callable[..., WarmPool]) -> None:
    """A waiting ``python/base`` sandbox holds 4-6 MB (PSS, measured): 12 MB hold two or so, not four."""
    pool = await local(
        prewarm=["python/base/light"], min_idle=4, memory_budget_mb=12, memory_estimate_mb=1
    ).open()
    await eventually(lambda: pool.stats().idle >= 1)
    await asyncio.sleep(2)
    stats = pool.stats()
    assert 1 <= stats.idle < 4 and stats.keys[0].target == 4, stats  # wanted, but over the budget
    assert stats.idle_memory_bytes <= 12 << 20 < stats.idle_memory_bytes * 4 // stats.idle, stats
    assert stats.idle_memory_bytes // stats.idle > 1 << 20  # PSS of a waiting interpreter: a few MB


async def test_a_sandbox_over_the_budget_is_not_kept(local: Callable[..., WarmPool]) -> None:
    pool = await local(prewarm=["python/base/light"], memory_budget_mb=1, memory_estimate_mb=1).open()
    await eventually(lambda: pool.stats().over_budget == 1)
    await asyncio.sleep(1.5)  # measured now: no second try
    stats = pool.stats()
    assert stats.idle == 0 and stats.starts == 1 and stats.over_budget == 1, stats
    assert (await pool.run(py("print('cold')"))).stdout == "cold\n"


async def test_a_sandbox_that_dies_while_idle_is_replaced_after_a_pause(
    local: Callable[..., WarmPool],
) -> None:
    pool = await local(prewarm=["python/base/light"]).open()
    await eventually(lambda: pool.stats().idle == 1 and pool.idle_pids() is not None)
    for pid in pool.idle_pids() or ():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    await eventually(lambda: pool.stats().start_failures == 1)  # dropped, and the key backs off
    assert pool.stats().idle == 0 and pool.stats().starts == 1
    await eventually(lambda: pool.stats().idle == 1 and pool.stats().starts == 2)  # then replaced
    assert (await pool.run(py("print(1)"))).stdout == "1\n" and pool.stats().hits == 1


async def test_failing_starts_back_off(local: Callable[..., WarmPool]) -> None:
    pool = await local(prewarm=["python/base/light"], start_timeout_s=0.001).open()
    await asyncio.sleep(3.5)
    failures = pool.stats().start_failures
    assert 1 <= failures <= 4, failures  # 1 s, 2 s, 4 s apart: not a busy loop
    assert (await pool.run(py("print('still runs')"))).stdout == "still runs\n"


# --- nothing left ---------------------------------------------------------------------------------


def _cmdline(pid: object) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()[:200]
    except OSError:
        return b"(gone)"


def _fork_server(pid: int) -> bool:
    """Whether ``pid`` is part of a fork server's sandbox (launcher, bwrap or the zygote itself)."""
    try:
        return b"/opt/warm/zygote.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _host_state() -> tuple[set[int], set[Path], set[str], set[Path]]:
    tmp = Path(tempfile.gettempdir())
    dirs = {*tmp.glob(f"agentic-*-{os.getpid()}-*"), *tmp.glob("agentic-gvisor-*")}
    return descendants(os.getpid()), set(our_cgroups()), set(our_mounts()), dirs


@pytest.mark.parametrize("backend", ["local", "gvisor"])
async def test_closing_the_pool_leaves_nothing_behind(backend: str) -> None:
    await available(backend)
    before = _host_state()
    chosen = settings(prewarm=["python/base/light", "typescript/base/light"], min_idle=2)
    pool = WarmPool(create_sandbox(chosen, backend), chosen)
    await pool.open()
    # The pool must remove its own sandboxes before it closes the backend (whose close would
    # otherwise clean up after it, after a wait): look at what is left when that close begins.
    backend_close, left_at_backend_close = pool.inner.close, set[int]()

    async def close_backend() -> None:
        # The backend's own fork servers (forked warm sandboxes) are its to stop, like its pools.
        # A process already exiting has no command line left (b"" or gone): not left behind.
        left_at_backend_close.update(
            pid
            for pid in descendants(os.getpid())
            if not _fork_server(pid) and _cmdline(pid) not in (b"", b"(gone)")
        )
        await backend_close()

    pool.inner.close = close_backend  # type: ignore[method-assign]
    try:
        daemon = (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('left one')\n"
        )
        assert await pool.ready(py(daemon))
        assert (await pool.run(py(daemon))).ok
        going = py("import time\nprint('go', flush=True)\ntime.sleep(30)\n")
        assert await pool.ready(going)
        stream, seen = pool.stream(going), ""
        async for chunk in stream:
            seen += chunk.data
            if seen == "go\n":
                break
        await eventually(lambda: pool.stats().idle >= 3)
        assert pool.stats().hits == 1, pool.stats()  # the stream's counts when it ends
    finally:
        await pool.close()  # with a run still going and idle sandboxes of two keys
    await stream.aclose()  # type: ignore[attr-defined]
    await pool.close()  # idempotent
    assert not left_at_backend_close, {pid: _cmdline(pid) for pid in left_at_backend_close}
    after = _host_state()
    for was, now, what in zip(before, after, ("processes", "cgroups", "mounts", "temp dirs"), strict=True):
        left = now - was  # type: ignore[operator]
        if what == "processes":
            left = {pid: _cmdline(pid) for pid in left}  # what they were, if any
        assert not left, f"{what} left: {left}"


# --- metrics --------------------------------------------------------------------------------------


async def test_metrics_show_the_pool(local: Callable[..., WarmPool]) -> None:
    pool = await local(prewarm=["python/base/light"]).open()
    instrumented = InstrumentedSandbox(pool)  # what the server puts around its backend
    await eventually(lambda: pool.stats().idle == 1)
    assert (await instrumented.run(py("print(1)"))).ok
    assert (await instrumented.run(RunRequest(command=("/bin/true",)))).ok
    await eventually(lambda: pool.stats().idle >= 1 and not pool.stats().keys[0].starting)
    text = generate_latest().decode()
    stats = pool.stats()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("agentic_sandbox_warm_")
    }
    key = 'backend="local",key="python/base/64MB"'
    assert samples['agentic_sandbox_warm_hits_total{backend="local"}'] == stats.hits == 1
    assert samples['agentic_sandbox_warm_cold_only_total{backend="local"}'] == stats.cold == 1
    assert samples['agentic_sandbox_warm_misses_total{backend="local",reason="empty"}'] == 0
    assert samples['agentic_sandbox_warm_start_seconds_count{backend="local"}'] == stats.starts >= 2
    assert samples['agentic_sandbox_warm_start_seconds_sum{backend="local"}'] == stats.start_seconds_total > 0
    assert samples[f"agentic_sandbox_warm_idle{{{key}}}"] == stats.idle >= 1
    assert samples[f"agentic_sandbox_warm_idle_memory_bytes{{{key}}}"] == stats.idle_memory_bytes > 1 << 20
    assert samples['agentic_sandbox_warm_memory_budget_bytes{backend="local"}'] == 512 << 20
