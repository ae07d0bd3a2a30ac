"""``server.heap``: what startup builds, and what the first run leaves for later runs, are frozen.

The real collector, no fakes: ``gc.get_freeze_count()`` says how many objects full passes skip
(lists, not dicts of ints: the collector does not track those, so they are never frozen).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from server.heap import YOUNG_THRESHOLD, freeze_after_startup, freeze_warm_heap


@contextlib.asynccontextmanager
async def _lifespan(app: object) -> AsyncIterator[None]:
    yield


async def test_what_the_first_run_leaves_behind_is_frozen_once_and_all_is_freed_at_shutdown() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    async with freeze_after_startup(_lifespan)(None):
        serving = gc.get_threshold()
        at_startup = gc.get_freeze_count()
        first_run = [[i] for i in range(5_000)]  # what the first run builds for the next ones
        freeze_warm_heap()
        warm = gc.get_freeze_count()
        later_runs = [[i] for i in range(5_000)]
        freeze_warm_heap()  # every later run calls it too: only the first one freezes
        again = gc.get_freeze_count()
    assert at_startup > 0
    assert warm >= at_startup + len(first_run), (at_startup, warm)
    assert again == warm, "only the first run's heap is frozen; later runs' objects stay collectable"
    assert gc.get_freeze_count() == 0, "shutting the app down hands the frozen heap back"
    assert serving == (YOUNG_THRESHOLD, *before[1:]), "fewer, larger passes of the young generation"
    assert gc.get_threshold() == before, "and the collector is as it was once the app is down"
    assert later_runs


def test_without_a_frozen_startup_the_first_run_freezes_nothing() -> None:
    """A graph driven outside the server (Studio, the tests' executors) keeps the collector as it is."""
    gc.unfreeze()
    freeze_warm_heap()
    assert gc.get_freeze_count() == 0
