"""An app's log (``server.apps.logs.AppLog``): bounded, positioned, followable."""

from __future__ import annotations

import asyncio
import time

from server.apps.logs import AppLog


def test_the_log_keeps_the_newest_characters_and_counts_what_fell_out() -> None:
    log = AppLog(max_chars=10)
    log.append("stdout", "abcdef")
    log.append("stderr", "ghij")
    assert log.text() == "abcdefghij" and (log.start, log.end) == (0, 10)
    log.append("stdout", "klm")
    assert log.text() == "ghijklm" and (log.start, log.end) == (6, 13)  # whole chunks leave
    chunks, missed, end = log.since(2)
    assert missed == 4 and end == 13 and [c.data for c in chunks] == ["ghij", "klm"]
    chunks, missed, _ = log.since(8)
    assert missed == 0 and [(c.stream, c.data) for c in chunks] == [("stderr", "ij"), ("stdout", "klm")]
    assert log.since(13)[0] == [] and log.tail(4) == "jklm"
    log.append("stdout", "x" * 25)  # one chunk over the bound keeps its tail
    assert log.text() == "x" * 10 and log.end == 38 and log.start == 28


async def test_a_follower_wakes_on_new_output_and_on_close() -> None:
    log = AppLog()
    started = time.monotonic()
    waiter = asyncio.create_task(log.wait(0, 10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    log.append("stdout", "hello")
    await asyncio.wait_for(waiter, 2)
    closing = asyncio.create_task(log.wait(log.end, 10))
    await asyncio.sleep(0.05)
    log.close()
    await asyncio.wait_for(closing, 2)
    assert log.closed and time.monotonic() - started < 5
