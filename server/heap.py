"""Keep the objects built at startup out of the garbage collector's full passes (``gc.freeze``).

Why: the server holds LangChain, LangGraph, the OpenAI SDK, pydantic models and the compiled graph,
several hundred thousand objects that live as long as the process. CPython's full collection
(generation 2) walks every one of them each time: under ``bench/server_load.py`` a pass took
0.35-0.45 s, came every couple of hundred runs, and stood the event loop still meanwhile (every
stream waited), about 8% of the server's CPU. ``gc.freeze()`` moves all that is alive at that
moment to a permanent generation the collector skips (CPython's own advice for long-lived servers);
what is made later is collected as before. It runs once every lifespan has opened, and once more
when the first run has ended (:func:`freeze_warm_heap`): that run builds what every later run reuses
(chat models and their HTTP clients, pydantic validators, the SDKs' first-use caches), which
otherwise took most of a full pass's time (passes of 130-175 ms instead of 30-50 ms). Each time one
collection goes first, so only what is alive is frozen. A frozen object is never freed: what the
runs in flight at that moment hold stays (one time, at most ``max_concurrent_runs`` runs' worth)
until the app shuts down: its lifespan's exit unfreezes, so a process that starts and stops many
apps (the tests) frees each one's objects.

While the app serves, the youngest generation is collected after 10,000 new container objects
instead of CPython's 700: a run makes tens of thousands of short-lived ones (messages, chunks,
events), most freed by their reference count before a pass would look at them, so fewer, larger
passes do less work (GC time under ``bench/server_load.py``, measured by ``gc.callbacks``: 6.6-6.8%
of the server's CPU with 700, 2.5-3.1% with 10,000, 2.0-2.8% with 50,000). The cost is memory:
at most that many unreachable objects wait for a pass, a few MB. The thresholds are restored at
shutdown.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

__all__ = ["YOUNG_THRESHOLD", "freeze_after_startup", "freeze_warm_heap"]

logger = logging.getLogger(__name__)

_stage = "off"  # "startup": an app froze its startup heap; "warm": and the first run's too
YOUNG_THRESHOLD = 10_000  # new container objects between passes of the youngest generation


def _freeze(what: str) -> None:
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    logger.info(
        "%s: %d objects now out of full collections (%.0f ms)",
        what,
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )


def freeze_warm_heap() -> None:
    """Freeze what the first run left behind: once, and only in an app that froze its startup heap."""
    global _stage
    if _stage == "startup":
        _stage = "warm"
        _freeze("heap frozen after the first run")


AppT = TypeVar("AppT")


def freeze_after_startup(
    lifespan: Callable[[AppT], AbstractAsyncContextManager[Any]],
) -> Callable[[AppT], AbstractAsyncContextManager[None]]:
    """``lifespan``, then one collection, ``gc.freeze()`` and a larger young generation."""

    @contextlib.asynccontextmanager
    async def frozen(app: AppT) -> AsyncIterator[None]:
        global _stage
        async with lifespan(app):
            _freeze("startup heap frozen")
            _stage = "startup"
            thresholds = gc.get_threshold()
            gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
            try:
                yield
            finally:
                gc.set_threshold(*thresholds)
                gc.unfreeze()
                _stage = "off"

    return frozen
