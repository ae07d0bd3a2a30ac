"""Stack dumps on a signal: what a server that seems stuck is doing, without a debugger.

``SIGUSR1`` writes every thread's Python stack to stderr (:mod:`faulthandler`, from C: it works
even while the event loop itself is blocked). ``SIGUSR2`` writes the await chain of every asyncio
task (a run waiting forever on a lock, a future or a thread shows where). Both are what an
operator, or a test that failed against a server process, sends before stopping it. A signal
that already has a handler (gunicorn uses both) is left alone.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any, TextIO

__all__ = ["dump_tasks", "install_stack_dumps"]


def _await_chain(coro: Any) -> list[FrameType]:
    """The frames from a task's coroutine down to what it awaits (3.11's ``print_stack`` shows the first)."""
    frames: list[FrameType] = []
    while coro is not None:
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is not None:
            frames.append(frame)
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return frames


def dump_tasks(out: TextIO | None = None) -> None:
    """Write every asyncio task of the running loop with its await chain (innermost last)."""
    out = out if out is not None else sys.stderr
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    print(f"--- {len(tasks)} asyncio tasks ---", file=out)
    for task in tasks:
        print(f"task {task.get_name()}:", file=out)
        frames = _await_chain(task.get_coro())
        summary = traceback.StackSummary.extract(((f, f.f_lineno) for f in frames), limit=None)
        out.write("".join(summary.format()))
    out.flush()


def install_stack_dumps() -> None:
    """Dump threads on ``SIGUSR1`` and asyncio tasks on ``SIGUSR2`` (call on the running loop).

    Only in the main thread (signals are delivered there): an app served from a thread, as some
    tests do, gets none.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    if signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)
