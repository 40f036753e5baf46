"""The one market calendar (XNYS through exchange_calendars): sessions, holidays, half days, edges, DST."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import pytest

from events import markethours as mh
from events.markethours import (HOLIDAYS, NEW_YORK, is_market_open, is_session, minutes_since_open,
                                previous_close_ms, session_fraction, session_of, session_open_close)


def ny_ms(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK).timestamp() * 1000)


def test_a_holiday_has_no_session() -> None:
    """2026-07-03: Independence Day observed (the 4th is a Saturday)."""
    day = date(2026, 7, 3)
    assert session_open_close(day) is None and not is_session(day) and day in HOLIDAYS
    assert not is_market_open(ny_ms(2026, 7, 3, 11, 0))
    assert session_of(ny_ms(2026, 7, 3, 11, 0)) is None and minutes_since_open(ny_ms(2026, 7, 3, 11, 0)) is None
    assert date(2026, 7, 2) not in HOLIDAYS and date(2026, 7, 4) not in HOLIDAYS  # a session; a weekend day
    # the next session's previous close is the session before the holiday: Thursday 2026-07-02 16:00
    assert previous_close_ms(ny_ms(2026, 7, 6, 10, 0)) == ny_ms(2026, 7, 2, 16, 0)


def test_a_half_day_closes_at_13_00() -> None:
    """2026-11-27, the day after Thanksgiving: 09:30-13:00."""
    assert session_open_close(date(2026, 11, 27)) == (ny_ms(2026, 11, 27, 9, 30), ny_ms(2026, 11, 27, 13, 0))
    assert is_market_open(ny_ms(2026, 11, 27, 12, 59, 59))
    assert not is_market_open(ny_ms(2026, 11, 27, 13, 0)) and not is_market_open(ny_ms(2026, 11, 27, 15, 0))
    assert session_fraction(ny_ms(2026, 11, 27, 11, 15)) == pytest.approx(0.5)  # half of 210 minutes
    assert session_fraction(ny_ms(2026, 11, 27, 14, 0)) == 1.0
    assert previous_close_ms(ny_ms(2026, 11, 27, 14, 0)) == ny_ms(2026, 11, 27, 13, 0)
    assert previous_close_ms(ny_ms(2026, 11, 30, 9, 31)) == ny_ms(2026, 11, 27, 13, 0)
    assert date(2026, 11, 26) in HOLIDAYS  # Thanksgiving


def test_a_weekend_has_no_session_and_monday_looks_back_to_friday() -> None:
    assert not is_session(date(2026, 3, 7)) and not is_session(date(2026, 3, 8))
    assert date(2026, 3, 7) not in HOLIDAYS  # weekends are not holidays
    assert not is_market_open(ny_ms(2026, 3, 7, 12, 0))
    assert previous_close_ms(ny_ms(2026, 3, 7, 12, 0)) == ny_ms(2026, 3, 6, 16, 0)
    assert previous_close_ms(ny_ms(2026, 3, 9, 9, 30)) == ny_ms(2026, 3, 6, 16, 0)


def test_open_and_close_edges() -> None:
    """Open inclusive, close exclusive, to the millisecond."""
    open_ms, close_ms = session_open_close(date(2026, 6, 10)) or (0, 0)
    assert (open_ms, close_ms) == (ny_ms(2026, 6, 10, 9, 30), ny_ms(2026, 6, 10, 16, 0))
    assert not is_market_open(open_ms - 1) and is_market_open(open_ms)
    assert is_market_open(close_ms - 1) and not is_market_open(close_ms)
    assert minutes_since_open(open_ms) == 0 and minutes_since_open(open_ms + 90 * 60_000) == 90
    assert minutes_since_open(close_ms) is None and minutes_since_open(open_ms - 1) is None
    assert session_of(open_ms) == date(2026, 6, 10) and session_of(close_ms) is None
    # during the session the previous close is yesterday's; after the close it is today's
    assert previous_close_ms(open_ms) == ny_ms(2026, 6, 9, 16, 0)
    assert previous_close_ms(close_ms) == close_ms
    assert session_fraction(open_ms - 1) == 0.0 and session_fraction(close_ms) == 1.0


def utc_hour(day: date) -> int:
    return datetime.fromtimestamp((session_open_close(day) or (0, 0))[0] / 1000, tz=timezone.utc).hour


def test_dst_changes_move_the_open_in_utc() -> None:
    """2026-03-08 (US spring forward): Friday opens 14:30 UTC, Monday 13:30 UTC; back on 2026-11-01."""
    assert (utc_hour(date(2026, 3, 6)), utc_hour(date(2026, 3, 9))) == (14, 13)
    assert (utc_hour(date(2026, 10, 30)), utc_hour(date(2026, 11, 2))) == (13, 14)
    assert is_market_open(ny_ms(2026, 3, 9, 9, 30)) and not is_market_open(ny_ms(2026, 3, 9, 9, 29, 59))
    assert previous_close_ms(ny_ms(2026, 3, 9, 10, 0)) == ny_ms(2026, 3, 6, 16, 0)  # 23 h of clock apart
    assert minutes_since_open(ny_ms(2026, 11, 2, 10, 0)) == 30


def test_a_call_takes_microseconds_once_the_calendar_is_built() -> None:
    """Ticks call it at high rates: after the first call (which builds the calendar) no call does more
    than a binary search."""
    mh.calendar()
    ts = ny_ms(2026, 7, 6, 10, 0)
    n = 20_000
    start = time.perf_counter()
    for i in range(n):
        is_market_open(ts + i)
    per_call_us = (time.perf_counter() - start) / n * 1e6
    assert per_call_us < 100, per_call_us  # measured about 4 us on the shared 2-core box
    assert mh.calendar() is mh.calendar()


def test_outside_the_calendar_the_plain_rule_holds() -> None:
    assert is_market_open(ny_ms(1995, 3, 9, 10, 0)) and not is_market_open(ny_ms(1995, 3, 11, 10, 0))
    far = date(mh.calendar().days[-1].year + 2, 3, 9)
    while far.weekday() >= 5:
        far += timedelta(days=1)
    assert session_open_close(far) is not None
