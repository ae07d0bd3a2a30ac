"""``server.heap``: what startup builds, and what the first run leaves for later runs, are frozen.

The real collector, no fakes: ``gc.get_freeze_count()`` says how many objects full passes skip
(lists, not dicts of ints: the collector does not track those, so they are never frozen). The
collector is one per process, and other tests serve apps from threads of this one, so each
scenario runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

_APP_LIFETIME = """
import asyncio, contextlib, gc, json
from server.heap import YOUNG_THRESHOLD, freeze_after_startup, freeze_warm_heap

@contextlib.asynccontextmanager
async def lifespan(app):
    yield

async def main():
    seen = {"young_threshold": YOUNG_THRESHOLD, "before": gc.get_threshold()}
    async with freeze_after_startup(lifespan)(None):
        seen["serving"] = gc.get_threshold()
        seen["at_startup"] = gc.get_freeze_count()
        first_run = [[i] for i in range(5_000)]  # what the first run builds for the next ones
        freeze_warm_heap()
        seen["warm"] = gc.get_freeze_count()
        later_runs = [[i] for i in range(5_000)]
        freeze_warm_heap()  # every later run calls it too
        seen["again"] = gc.get_freeze_count()
    seen["after"] = gc.get_threshold()
    seen["freeze_after"] = gc.get_freeze_count()
    seen["made"] = len(first_run) + len(later_runs)
    print(json.dumps(seen))

asyncio.run(main())
"""

_NO_APP = """
import gc, json
from server.heap import freeze_warm_heap
freeze_warm_heap()
print(json.dumps({"frozen": gc.get_freeze_count()}))
"""


def _run(script: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_what_the_first_run_leaves_behind_is_frozen_once_and_all_is_freed_at_shutdown() -> None:
    seen = _run(_APP_LIFETIME)
    assert seen["at_startup"] > 0
    assert seen["warm"] >= seen["at_startup"] + 5_000, seen
    assert seen["again"] == seen["warm"], "only the first run's heap is frozen: later runs' stay collectable"
    assert seen["freeze_after"] == 0, "shutting the app down hands the frozen heap back"
    assert seen["serving"] == [seen["young_threshold"], *seen["before"][1:]], "fewer, larger young passes"
    assert seen["after"] == seen["before"], "and the collector is as it was once the app is down"


def test_without_a_frozen_startup_the_first_run_freezes_nothing() -> None:
    """A graph driven outside the server (Studio, the tests' executors) keeps the collector as it is."""
    assert _run(_NO_APP) == {"frozen": 0}
