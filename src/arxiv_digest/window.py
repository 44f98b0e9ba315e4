"""Window math: a post date <-> its half-open window ``[day-1 anchor, day anchor)`` in a time zone.

Pure functions; the clock is always passed in. Windows are built from the same date -> instant
mapping at both ends, so consecutive windows tile time with no gap or overlap, across DST changes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .errors import UsageError
from .models import Window


def anchor_instant(day: date, tz: str, anchor: str) -> datetime:
    """The instant (in UTC) at which ``day``'s window ends: the anchor time on that local date.

    Returned in UTC because Python compares and subtracts datetimes sharing one tzinfo by wall
    clock, which is wrong across DST changes.
    """
    hours, minutes = (int(part) for part in anchor.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def window_for(day: date, tz: str, anchor: str) -> Window:
    return Window(
        day=day,
        start=anchor_instant(day - timedelta(days=1), tz, anchor),
        end=anchor_instant(day, tz, anchor),
    )


def day_containing(moment: datetime, tz: str, anchor: str) -> date:
    """The post date whose window contains ``moment``."""
    local_day = moment.astimezone(ZoneInfo(tz)).date()
    for day in (local_day, local_day + timedelta(days=1), local_day - timedelta(days=1)):
        if window_for(day, tz, anchor).contains(moment):
            return day
    raise AssertionError(f"no window contains {moment}")  # unreachable: windows tile time


def latest_closed_day(now: datetime, tz: str, anchor: str) -> date:
    """The latest date whose window has ended at ``now``."""
    return day_containing(now, tz, anchor) - timedelta(days=1)


FIRST_DAY = date(1991, 8, 1)  # arXiv opened in August 1991
LAST_DAY = date.max - timedelta(days=2)  # a window ending later has no instant that Python can represent


def parse_day(value: str) -> date:
    """A post date from the command line, within the span arXiv and the window math can cover."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise UsageError(f'"{value}" is not a valid date (expected YYYY-MM-DD, e.g. 2026-01-15)') from None
    if day < FIRST_DAY:
        raise UsageError(f"{day} is before arXiv began (August 1991); give a date from {FIRST_DAY} on")
    if day > LAST_DAY:
        raise UsageError(f"{day} is in the future; nothing to generate yet")
    return day


def closed_window(day: date, tz: str, anchor: str, now: datetime) -> Window:
    """The window of ``day``, refusing one that has not ended yet (its post would be incomplete)."""
    window = window_for(day, tz, anchor)
    if window.end > now:
        local_end = window.end.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")
        raise UsageError(f"the window of {day} ends at {local_end}, which is in the future; nothing to generate yet")
    return window


def utc_now() -> datetime:
    return datetime.now(UTC)
