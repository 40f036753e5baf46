"""US equity regular trading hours (NYSE/Nasdaq): 09:30-16:00 America/New_York, weekdays.

Full-day exchange holidays are listed per year where known; early closes are
not modelled (a quiet feed on those afternoons reads as a closed market).
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
OPEN = time(9, 30)
CLOSE = time(16, 0)

HOLIDAYS = {
    date(2025, 1, 1), date(2025, 1, 9), date(2025, 1, 20), date(2025, 2, 17), date(2025, 4, 18),
    date(2025, 5, 26), date(2025, 6, 19), date(2025, 7, 4), date(2025, 9, 1), date(2025, 11, 27),
    date(2025, 12, 25),
    date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 4, 3), date(2026, 5, 25),
    date(2026, 6, 19), date(2026, 7, 3), date(2026, 9, 7), date(2026, 11, 26), date(2026, 12, 25),
    date(2027, 1, 1), date(2027, 1, 18), date(2027, 2, 15), date(2027, 3, 26), date(2027, 5, 31),
    date(2027, 6, 18), date(2027, 7, 5), date(2027, 9, 6), date(2027, 11, 25), date(2027, 12, 24),
}


def is_market_open(ts_ms: int) -> bool:
    """Whether US equity markets are in regular trading hours at ``ts_ms``."""
    local = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(NEW_YORK)
    if local.weekday() >= 5 or local.date() in HOLIDAYS:
        return False
    return OPEN <= local.time() < CLOSE


def session_fraction(ts_ms: int) -> float:
    """How far through the regular session ``ts_ms`` is, 0..1 (clamped)."""
    local = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone(NEW_YORK)
    minutes = local.hour * 60 + local.minute + local.second / 60 - (9 * 60 + 30)
    return min(1.0, max(0.0, minutes / 390.0))
