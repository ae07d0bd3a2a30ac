"""Control-plane cost of one Kata run: API calls per run and the time our side spends on them.

The Kata backend runs against the fake Kubernetes API of the tests (``tests/sandbox/kata``),
served by its own thread and event loop, through the real ``kubernetes`` client. Its pods are
scripted (the fake kubelet plays Running -> Succeeded with a one-line log at once; no program
runs), so what is measured is the backend's own work: building the objects, the requests, reading
the frames, mapping the result. Two ways files go in, both measured:

* ConfigMap (a small set): create ConfigMap, create Pod, watch, log, delete Pod, delete ConfigMap;
* exec + tar (a set past ``configmap_max_bytes``): create Pod, watch, one websocket ``exec`` that
  carries the runner and the files, log, delete Pod. The scripted pod plays its log once the exec
  has ended (a runner waiting for its files); measured with the same small set (threshold 0: the
  protocol's own cost) and with 2 MB of incompressible files.

Baseline, measured in the same run through the same client (beside each path): a bare create +
get + delete of one ConfigMap (three requests). For both: wall time per operation and the CPU time
of our event loop's thread (``time.thread_time``), p50 over ``-n`` rounds after warm-up (the 2 MB
path: a quarter as many). Prints the counts, the figures, and last the ratios of a run's p50 wall
time to the baseline's (ConfigMap / exec small / exec 2 MB).
Run from the repo root: ``python bench/kata_control_plane.py [-n 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox.base import Limits, RunRequest  # noqa: E402
from sandbox.kata import KataSandbox, KataSettings  # noqa: E402
from sandbox.kata.runner import frame  # noqa: E402
from tests.sandbox.kata.fake_kube import FakeKube  # noqa: E402
from tests.sandbox.kata.fake_kubelet import Scenario  # noqa: E402

NAMESPACE = "agentic-sandboxes"
IMAGE = "registry.invalid/agentic-sandbox-base@sha256:" + "0" * 64


class FakeInThread:
    """The fake API server on its own thread and loop (so our loop's CPU time is ours alone)."""

    def __init__(self, *, upload: bool = False) -> None:
        self.upload = upload  # scripted pods wait for an exec before their log (the exec + tar path)
        self.kube: FakeKube | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with FakeKube(validate=False) as kube:  # the tests validate; here it would be the fake's cost
            kube.default_scenario = Scenario(
                mode="script", log=frame("s") + frame("o", b"1\n") + frame("x", "0"), await_exec=self.upload
            )
            self.kube = kube
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> FakeKube:
        self._thread.start()
        self._ready.wait(30)
        assert self.kube is not None
        return self.kube

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


async def timed(rounds: int, operation: object) -> tuple[list[float], list[float]]:
    """Wall and thread-CPU seconds of ``rounds`` awaits of ``operation()``."""
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.thread_time()
        await operation()  # type: ignore[operator]
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return walls, cpus


async def measure(
    rounds: int, warmup: int, *, threshold: int | None, files: dict[str, str | bytes]
) -> tuple[float, float, list[float], list[float], list[float], list[float], int]:
    """Calls per run, calls the fake saw, the baseline's and the runs' wall / CPU, objects left."""
    with FakeInThread(upload=threshold is not None) as kube, tempfile.TemporaryDirectory() as tmp:
        settings = KataSettings(
            kubeconfig=kube.kubeconfig(Path(tmp) / "kubeconfig"), images={"base": IMAGE}, reap_interval_s=0
        )
        if threshold is not None:
            settings = settings.model_copy(update={"configmap_max_bytes": max(1, threshold)})
        async with await KataSandbox.open(settings) as box:
            core = box.api.core
            names = iter(range(10**9))

            async def configmap_round_trip() -> None:
                name = f"bench-{next(names)}"
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name},
                    "data": {"k": "v"},
                }
                await core.create_namespaced_config_map(NAMESPACE, body)  # type: ignore[arg-type]
                await core.read_namespaced_config_map(name, NAMESPACE)
                await core.delete_namespaced_config_map(name, NAMESPACE)

            request = RunRequest(
                files={**files, "main.py": "print(1)"},
                language="python",
                entry="main.py",
                limits=Limits(disk_mb=16),
            )

            async def one_run() -> None:
                result = await box.run(request)
                assert result.ok and result.stdout == "1\n", result

            await timed(warmup, configmap_round_trip)
            await timed(warmup, one_run)
            before = box.api.requests
            base_wall, base_cpu = await timed(rounds, configmap_round_trip)
            base_calls = (box.api.requests - before) / rounds
            before, seen_before = box.api.requests, len(kube.requests)
            run_wall, run_cpu = await timed(rounds, one_run)
            run_calls = (box.api.requests - before) / rounds
            seen_calls = (len(kube.requests) - seen_before) / rounds
            execs = sum(1 for _, path in kube.requests[seen_before:] if path.endswith("/exec"))
            if threshold is None:
                assert execs == 0
            else:
                assert execs == rounds, execs
        leftovers = [key for key in kube.stored() if key[0] in ("pods", "configmaps")]
    assert base_calls == 3
    return run_calls, seen_calls, base_wall, base_cpu, run_wall, run_cpu, len(leftovers)


def _p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def main(rounds: int, warmup: int) -> None:
    big = {"data/a.bin": os.urandom(1_000_000), "data/b.bin": os.urandom(1_000_000)}
    paths = [
        ("ConfigMap, small set", rounds, None, {}),
        ("exec + tar, small set", rounds, 0, {}),
        ("exec + tar, 2 MB set", max(5, rounds // 4), 0, big),
    ]
    print(f"kata control plane: fake API on its own thread (scripted pods), {warmup} warm-up runs per path")
    base_p50s, ratios = [], []
    for label, n, threshold, files in paths:
        calls, seen, base_wall, base_cpu, run_wall, run_cpu, left = await measure(
            n, warmup, threshold=threshold, files=files
        )
        base_p50s.append(_p50(base_wall))
        ratios.append(statistics.median(run_wall) / statistics.median(base_wall))
        print(
            f"{label:22s} {n:4d} runs: {calls:.1f} API calls per run ({seen:.1f} seen by the fake), "
            f"p50 {_p50(run_wall):.2f} ms wall, {_p50(run_cpu):.2f} ms CPU on our loop, "
            f"p90 {statistics.quantiles(run_wall, n=10)[-1] * 1000:.2f} ms wall; "
            f"ratio to baseline {ratios[-1]:.2f}; objects left {left}"
        )
    print(
        f"baseline ConfigMap create+get+delete (3 calls): p50 "
        f"{', '.join(f'{b:.2f}' for b in base_p50s)} ms wall (measured beside each path)"
    )
    print(f"ratio run / baseline (p50 wall): {' / '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.warmup))
