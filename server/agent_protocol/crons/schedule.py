"""Cron schedules: checked with ``croniter`` and turned into fire times (epoch seconds, UTC).

A schedule has 5 fields (minute hour day-of-month month day-of-week), 6 (then seconds last) or 7
(then a year); it is read in its IANA ``timezone`` (UTC when none). A schedule may not fire more
often than the operator's minimum interval: the gaps between its next fires are measured when it
is stored, and :func:`following_fire` never schedules a fire closer than that to the last one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from server.agent_protocol.errors import InvalidCronError

__all__ = ["MAX_SCHEDULE_LENGTH", "check_schedule", "check_timezone", "following_fire", "next_fire"]

MAX_SCHEDULE_LENGTH = 256
_GAPS_MEASURED = 128  # fires looked at for the shortest gap (a field's full cycle is at most 60)
_EXAMPLE = "'*/15 * * * *' fires every 15 minutes; a sixth field is seconds, e.g. '* * * * * */30'"


def check_timezone(name: str | None) -> tzinfo:
    """The zone a schedule is read in. Raises InvalidCronError for a name that is not an IANA zone."""
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, KeyError):
        raise InvalidCronError(
            f"timezone {name!r:.80} is not an IANA time zone; use a name such as 'Europe/Paris' or 'UTC'"
        ) from None


def _iterator(schedule: str, zone: tzinfo, after: float) -> croniter:
    start = datetime.fromtimestamp(after, zone)
    return croniter(schedule, start, ret_type=float)


def check_schedule(schedule: str, zone: tzinfo, min_interval_s: float, now: float | None = None) -> float:
    """Check a schedule; return its first fire time.

    Raises:
        InvalidCronError: not a cron expression croniter reads, no fire at all, or fires closer
            together than ``min_interval_s`` (the message says the shortest gap found).
    """
    if not schedule.strip() or len(schedule) > MAX_SCHEDULE_LENGTH or "\x00" in schedule:
        raise InvalidCronError(
            f"schedule must be a cron expression of at most {MAX_SCHEDULE_LENGTH} characters; {_EXAMPLE}"
        )
    now = time.time() if now is None else now
    try:
        fires = _iterator(schedule, zone, now)
        first = previous = float(fires.get_next())
        shortest = float("inf")
        for _ in range(_GAPS_MEASURED):
            following = float(fires.get_next())
            shortest = min(shortest, following - previous)
            previous = following
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise InvalidCronError(
            f"schedule {schedule!r:.80} is not a cron expression ({exc}); use 5 fields (minute hour "
            f"day-of-month month day-of-week) or 6 with seconds last: {_EXAMPLE}"
        ) from None
    if shortest < min_interval_s:
        raise InvalidCronError(
            f"schedule {schedule!r:.80} fires every {shortest:g} s at its most frequent; this server "
            f"allows one fire per {min_interval_s:g} s at most (AGENTIC_CRON_MIN_INTERVAL_S): "
            "choose a sparser schedule"
        )
    return first


def next_fire(schedule: str, zone: tzinfo, after: float) -> float | None:
    """The first fire of ``schedule`` strictly after ``after`` (epoch seconds).

    None when the schedule fires no more (a past year); a schedule that became unreadable (a
    croniter upgrade) also ends, rather than failing every tick.
    """
    try:
        return float(_iterator(schedule, zone, after).get_next())
    except (CroniterError, ValueError, KeyError, TypeError):
        return None


def following_fire(
    schedule: str, zone: tzinfo, fired: float, now: float, min_interval_s: float
) -> float | None:
    """The fire after the one scheduled at ``fired`` and made at ``now`` (at or after it).

    Fires missed while no server ran collapse into the one made now: the next is after ``now``.
    It is also at least ``min_interval_s`` after ``fired``, so scheduled fires are never closer.
    """
    return next_fire(schedule, zone, max(now, fired + min_interval_s - 0.001))
