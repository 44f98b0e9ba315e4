"""Window math: tiling (property), DST, and refusing dates whose window has not ended."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arxiv_digest.errors import UsageError
from arxiv_digest.window import closed_window, day_containing, latest_closed_day, parse_day, window_for

ZONES = [
    "Asia/Shanghai",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "UTC",
    "Pacific/Chatham",
]
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2035, 12, 31))
zones = st.sampled_from(ZONES)
anchors = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


def test_default_window_is_the_24_hours_before_0850_cst() -> None:
    window = window_for(date(2026, 1, 15), "Asia/Shanghai", "08:50")
    assert window.start.astimezone(UTC) == datetime(2026, 1, 14, 0, 50, tzinfo=UTC)
    assert window.end.astimezone(UTC) == datetime(2026, 1, 15, 0, 50, tzinfo=UTC)


@given(days, zones, anchors)
def test_consecutive_windows_tile_time(day: date, tz: str, anchor: str) -> None:
    today, tomorrow = window_for(day, tz, anchor), window_for(day + timedelta(days=1), tz, anchor)
    assert today.end == tomorrow.start  # no gap, no overlap
    assert today.start < today.end
    assert timedelta(hours=22) <= today.end - today.start <= timedelta(hours=26)


@given(
    st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
    zones,
    anchors,
)
def test_every_instant_is_in_exactly_one_window(moment: datetime, tz: str, anchor: str) -> None:
    day = day_containing(moment, tz, anchor)
    assert window_for(day, tz, anchor).contains(moment)
    assert not window_for(day - timedelta(days=1), tz, anchor).contains(moment)
    assert not window_for(day + timedelta(days=1), tz, anchor).contains(moment)


def test_dst_change_gives_a_23_hour_window() -> None:
    window = window_for(date(2026, 3, 8), "America/New_York", "08:50")
    assert window.end - window.start == timedelta(hours=23)


def test_latest_closed_day_switches_at_the_anchor() -> None:
    before = datetime(2026, 1, 15, 0, 49, tzinfo=UTC)  # 08:49 CST
    after = datetime(2026, 1, 15, 0, 50, tzinfo=UTC)
    assert latest_closed_day(before, "Asia/Shanghai", "08:50") == date(2026, 1, 14)
    assert latest_closed_day(after, "Asia/Shanghai", "08:50") == date(2026, 1, 15)


def test_unfinished_window_and_bad_dates_are_usage_errors() -> None:
    now = datetime(2026, 1, 15, 0, 49, tzinfo=UTC)
    with pytest.raises(UsageError, match="in the future"):
        closed_window(date(2026, 1, 15), "Asia/Shanghai", "08:50", now)
    assert closed_window(date(2026, 1, 14), "Asia/Shanghai", "08:50", now).day == date(2026, 1, 14)
    for bad in ["2026-02-30", "yesterday", "2026/01/15", ""]:
        with pytest.raises(UsageError, match="not a valid date"):
            parse_day(bad)
