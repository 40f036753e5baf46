"""The one market calendar: US equity regular sessions (NYSE, ``exchange_calendars``' ``XNYS``).

Sessions, holidays and half days (early closes, e.g. 13:00 the day after Thanksgiving) come
from ``exchange_calendars``, which keeps them maintained; nothing here lists a holiday. The
calendar is built once per process, on first use (about a second: call :func:`calendar` at
start to take that hit early), for the sessions of :data:`FIRST_YEAR` to three years past the
current one. Its opens and closes are then two sorted arrays of epoch milliseconds and every
call is one binary search: microseconds, so ticks may call it at any rate.

Times are epoch milliseconds (UTC); a session is named by its date in New York. Outside the
calendar's range (before :data:`FIRST_YEAR`, or years ahead) the plain rule holds: weekdays,
09:30-16:00 New York time, no holidays.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator, Set
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["CLOSE", "FIRST_YEAR", "HOLIDAYS", "NEW_YORK", "OPEN", "MarketCalendar", "calendar", "is_market_open",
           "is_session", "minutes_since_open", "previous_close_ms", "session_fraction", "session_of",
           "session_open_close"]

NEW_YORK = ZoneInfo("America/New_York")
OPEN = time(9, 30)    # the regular open, every session
CLOSE = time(16, 0)   # the regular close (a half day closes earlier: see session_open_close)
FIRST_YEAR = 2000
EXCHANGE = "XNYS"


@dataclass(frozen=True)
class MarketCalendar:
    """The sessions of one exchange as sorted arrays (index i: session ``days[i]``)."""

    days: tuple[date, ...]
    opens_ms: tuple[int, ...]
    closes_ms: tuple[int, ...]

    def covers(self, ts_ms: int) -> bool:
        return bool(self.opens_ms) and self.opens_ms[0] - 86_400_000 <= ts_ms <= self.closes_ms[-1] + 86_400_000

    def last_opened(self, ts_ms: int) -> int:
        """Index of the latest session that opened at or before ``ts_ms`` (-1: none)."""
        return bisect.bisect_right(self.opens_ms, ts_ms) - 1

    def index_of(self, day: date) -> int | None:
        i = bisect.bisect_left(self.days, day)
        return i if i < len(self.days) and self.days[i] == day else None


@functools.cache
def calendar() -> MarketCalendar:
    """The process's calendar (built on the first call, then cached)."""
    import exchange_calendars

    last = date.today().year + 3
    cal = exchange_calendars.get_calendar(EXCHANGE, start=f"{FIRST_YEAR}-01-01", end=f"{last}-12-31")
    return MarketCalendar(tuple(d.date() for d in cal.sessions), _epoch_ms(cal.opens), _epoch_ms(cal.closes))


def _epoch_ms(series: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in series.values.astype("datetime64[ms]").astype("int64"))


def _at(day: date, t: time) -> int:
    return int(datetime.combine(day, t, NEW_YORK).timestamp() * 1000)


def _local(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(NEW_YORK)


def _rule_open_close(day: date) -> tuple[int, int] | None:
    """The plain rule, outside the calendar's range."""
    if day.weekday() >= 5:
        return None
    return _at(day, OPEN), _at(day, CLOSE)


def session_open_close(day: date) -> tuple[int, int] | None:
    """``(open_ms, close_ms)`` of the session of ``day`` (a New York date); None on a weekend or holiday.
    A half day's close is its early close (2026-11-27: 13:00)."""
    cal = calendar()
    if not cal.days or not cal.days[0] <= day <= cal.days[-1]:
        return _rule_open_close(day)
    i = cal.index_of(day)
    return None if i is None else (cal.opens_ms[i], cal.closes_ms[i])


def is_session(day: date) -> bool:
    """Whether the exchange trades on ``day`` (a New York date)."""
    return session_open_close(day) is not None


def _around(ts_ms: int) -> tuple[date, int, int] | None:
    """The latest session that opened at or before ``ts_ms``: its day, open and close."""
    cal = calendar()
    if not cal.covers(ts_ms):
        day = _local(ts_ms).date()
        for back in range(7):
            bounds = _rule_open_close(day - timedelta(days=back))
            if bounds is not None and bounds[0] <= ts_ms:
                return day - timedelta(days=back), bounds[0], bounds[1]
        return None
    i = cal.last_opened(ts_ms)
    return None if i < 0 else (cal.days[i], cal.opens_ms[i], cal.closes_ms[i])


def session_of(ts_ms: int) -> date | None:
    """The session ``ts_ms`` falls in (its New York date), None outside regular hours."""
    around = _around(ts_ms)
    return around[0] if around is not None and ts_ms < around[2] else None


def is_market_open(ts_ms: int) -> bool:
    """Whether the market is in a regular session at ``ts_ms`` (open inclusive, close exclusive)."""
    return session_of(ts_ms) is not None


def minutes_since_open(ts_ms: int) -> float | None:
    """Minutes since the open of the session in progress at ``ts_ms``; None outside regular hours."""
    around = _around(ts_ms)
    if around is None or ts_ms >= around[2]:
        return None
    return (ts_ms - around[1]) / 60_000


def previous_close_ms(ts_ms: int) -> int | None:
    """The close of the latest session that ended at or before ``ts_ms``: during a session the one
    before it (yesterday's close, Friday's on a Monday, the day before a holiday); after the close,
    that close. None before the calendar's first session."""
    around = _around(ts_ms)
    if around is None:
        return None
    if ts_ms >= around[2]:
        return around[2]
    prior = _around(around[1] - 1)
    return None if prior is None else prior[2]


def session_fraction(ts_ms: int) -> float:
    """How far through the regular session ``ts_ms`` is, 0..1 (clamped; a half day is shorter). On a
    day without a session, by the clock as if it had one (09:30-16:00)."""
    local = _local(ts_ms)
    bounds = session_open_close(local.date())
    if bounds is None:
        bounds = (_at(local.date(), OPEN), _at(local.date(), CLOSE))
    return min(1.0, max(0.0, (ts_ms - bounds[0]) / (bounds[1] - bounds[0])))


class _Holidays(Set[date]):
    """Weekdays without a session, as a set (``day in HOLIDAYS``), from the calendar."""

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and day.weekday() < 5 and not is_session(day)

    def __iter__(self) -> Iterator[date]:
        cal = calendar()
        day, sessions = cal.days[0], set(cal.days)
        while day <= cal.days[-1]:
            if day.weekday() < 5 and day not in sessions:
                yield day
            day += timedelta(days=1)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: full-day closures on weekdays (``date(2026, 7, 3) in HOLIDAYS``); kept for code that still asks so
HOLIDAYS: Set[date] = _Holidays()
