"""The pool of stopped instances and the reaper of expired ones, against the fake."""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox.backends.unikraft import UnikraftSandbox
from sandbox.base import Limits, RunRequest
from sandbox.unikraft import reap_expired
from tests.sandbox.unikraft.conftest import ukc_settings
from tests.sandbox.unikraft.fake_server import FakeServer

HELLO = RunRequest(files={"main.py": "print('hi')"}, language="python", entry="main.py")


async def _filled(box: UnikraftSandbox, size: int) -> None:
    for _ in range(200):
        if box.pool.size() == size:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the pool holds {box.pool.size()}, not {size}")


async def test_pooled_instances_are_stopped_and_started_on_demand(fake: FakeServer) -> None:
    settings = ukc_settings(fake, pool_size=1, pool_tiers=["light", "medium"])
    async with UnikraftSandbox(settings) as box:
        await _filled(box, 4)  # 2 library sets x 2 tiers
        pooled = {i.name: i for i in fake.state.instances.values()}
        assert all(i.state == "stopped" and i.name.startswith("agentic-pool-") for i in pooled.values())
        assert sorted((i.image, i.memory_mb) for i in pooled.values()) == [
            ("agentic/base:1", 256),
            ("agentic/base:1", 1024),
            ("agentic/datascience:1", 256),
            ("agentic/datascience:1", 1024),
        ]
        mark = fake.mark()
        result = await box.run(RunRequest(**{**HELLO.__dict__, "limits": Limits(memory_mb=300)}))
        assert result.ok and result.stdout == "hi\n"
        calls = fake.calls_since(mark)
        assert ("PUT", "/v1/instances/start") in calls
        # the medium base instance served the run (memory rounded up to the tier) and is gone
        gone = set(pooled) - set(fake.instance_names())
        assert [pooled[name].memory_mb for name in gone] == [1024]
        assert [pooled[name].image for name in gone] == ["agentic/base:1"]
        await _filled(box, 4)  # refilled behind the run
        big = await box.run(RunRequest(**{**HELLO.__dict__, "limits": Limits(memory_mb=2048)}))
        assert big.ok  # larger than every pooled shape: an instance of its own
    # closing deleted the pool (the fixture checks nothing is left)


async def test_a_pooled_instance_reaped_meanwhile_is_replaced(fake: FakeServer) -> None:
    async with UnikraftSandbox(ukc_settings(fake, pool_size=1)) as box:
        await _filled(box, 2)
        for instance in list(fake.state.instances.values()):
            await fake.call(lambda instance=instance: fake.state.delete(instance))
        result = await box.run(HELLO)
        assert result.ok


async def test_pool_entries_close_to_expiry_are_not_handed_out(fake: FakeServer) -> None:
    async with UnikraftSandbox(ukc_settings(fake, pool_size=1, pool_ttl_s=30)) as box:
        await _filled(box, 2)
        mark = fake.mark()
        assert (await box.run(HELLO)).ok
        assert ("PUT", "/v1/instances/start") not in fake.calls_since(mark)  # within a minute of expiry


async def _plant(fake: FakeServer, name: str, tags: list[str]) -> None:
    spec: dict[str, Any] = {"name": name, "image": "agentic/base:1", "memory_mb": 128, "tags": tags}
    await fake.call(lambda: _create(fake, spec))


async def _create(fake: FakeServer, spec: dict[str, Any]) -> None:
    fake.state.create(spec)


async def test_reaper_deletes_only_our_expired_instances(ukc: UnikraftSandbox, fake: FakeServer) -> None:
    assert ukc._reaper is not None
    await ukc._reaper  # the pass made when the backend opened (reap_interval_s=0: only that one)
    now = ukc.control.now()
    await _plant(
        fake, "agentic-run-expired", ["agentic", "agentic-kind=run", f"agentic-expires={int(now) - 5}"]
    )
    await _plant(
        fake, "agentic-app-live", ["agentic", "agentic-kind=app", f"agentic-expires={int(now) + 600}"]
    )
    await _plant(fake, "agentic-by-hand", ["agentic"])
    await _plant(fake, "someone-elses", ["team-x", f"agentic-expires={int(now) - 5}"])
    assert await reap_expired(ukc.control) == ["agentic-run-expired"]
    assert fake.instance_names() == ["agentic-app-live", "agentic-by-hand", "someone-elses"]
    for instance in list(fake.state.instances.values()):
        await fake.call(lambda instance=instance: fake.state.delete(instance))


async def test_reaper_runs_when_the_backend_opens(fake: FakeServer) -> None:
    await _plant(fake, "agentic-run-crashed", ["agentic", "agentic-expires=1"])
    async with UnikraftSandbox(ukc_settings(fake)):
        for _ in range(100):
            if not fake.instance_names():
                break
            await asyncio.sleep(0.02)
    assert fake.instance_names() == []
