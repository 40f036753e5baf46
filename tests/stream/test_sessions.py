"""Session references (stream.sessions) across a holiday, a half day and an overnight gap; hand-computed."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pandas as pd
import pytest

from events.contract import Bar, decode, encode
from events.markethours import session_open_close
from stream.bars import ShardState, SymbolState, add_history, add_ticks, close_bars, dump_state, load_state
from stream.sessions import SessionState, session_step

NY = ZoneInfo("America/New_York")


def ny(y: int, m: int, d: int, hh: int, mm: int) -> int:
    return int(datetime(y, m, d, hh, mm, tzinfo=NY).timestamp() * 1000)


def bar(state: SessionState, start_ms: int, o: float, h: float, low: float, c: float) -> dict[str, float | None]:
    return session_step(state, start_ms, o, h, low, c)


def test_independence_day_holiday_is_skipped_and_after_hours_change_nothing() -> None:
    s = SessionState()
    first = bar(s, ny(2026, 7, 1, 15, 59), 10.0, 10.5, 9.5, 10.2)  # Wed, the symbol's first bar
    assert first == {"session_open": 10.0, "prev_close": None, "gap_pct": None, "high_20d": None, "low_20d": None}
    thu = bar(s, ny(2026, 7, 2, 9, 30), 10.3, 11.0, 10.1, 10.8)
    assert (thu["session_open"], thu["prev_close"]) == (10.3, 10.2)
    assert thu["gap_pct"] == pytest.approx(100 * 0.1 / 10.2)
    bar(s, ny(2026, 7, 2, 15, 59), 10.8, 10.9, 10.6, 10.7)  # Thursday's last regular bar
    after = bar(s, ny(2026, 7, 2, 16, 0), 10.7, 12.0, 10.7, 12.0)  # after hours: not the close
    holiday = bar(s, ny(2026, 7, 3, 10, 0), 12.0, 12.5, 11.9, 12.4)  # Friday 3 July: market closed
    assert after == holiday == thu
    mon = bar(s, ny(2026, 7, 6, 9, 30), 11.77, 11.9, 11.5, 11.6)
    assert (mon["session_open"], mon["prev_close"]) == (11.77, 10.7)  # Thursday's regular close
    assert mon["gap_pct"] == pytest.approx(10.0)  # (11.77 - 10.7) / 10.7 = 10 %


def test_half_day_after_thanksgiving_ends_at_13_00() -> None:
    s = SessionState()
    bar(s, ny(2026, 11, 25, 15, 55), 48.0, 48.0, 48.0, 48.0)  # Wednesday
    fri = bar(s, ny(2026, 11, 27, 9, 30), 49.0, 49.5, 49.0, 49.2)  # Thursday 26th is Thanksgiving
    assert (fri["session_open"], fri["prev_close"]) == (49.0, 48.0)
    bar(s, ny(2026, 11, 27, 12, 55), 49.9, 50.0, 49.8, 50.0)  # the half day's last regular bar
    late = bar(s, ny(2026, 11, 27, 13, 0), 50.0, 60.0, 50.0, 60.0)  # 13:00: after the early close
    assert late == fri
    mon = bar(s, ny(2026, 11, 30, 9, 30), 52.0, 52.5, 51.5, 52.1)
    assert (mon["session_open"], mon["prev_close"]) == (52.0, 50.0)
    assert mon["gap_pct"] == pytest.approx(4.0)


def test_overnight_gap_down_and_premarket_bars_carry_the_last_references() -> None:
    s = SessionState()
    bar(s, ny(2026, 3, 9, 9, 30), 98.0, 101.0, 97.0, 99.0)
    bar(s, ny(2026, 3, 9, 15, 59), 99.5, 100.2, 99.4, 100.0)
    pre = bar(s, ny(2026, 3, 10, 8, 0), 96.0, 96.0, 90.0, 95.0)  # pre-market of Tuesday
    assert (pre["session_open"], pre["prev_close"], pre["gap_pct"]) == (98.0, None, None)
    tue = bar(s, ny(2026, 3, 10, 9, 30), 95.0, 95.5, 94.0, 94.5)
    assert (tue["session_open"], tue["prev_close"]) == (95.0, 100.0)
    assert tue["gap_pct"] == pytest.approx(-5.0)
    later = bar(s, ny(2026, 3, 10, 11, 0), 94.5, 96.0, 93.0, 95.5)
    assert later == tue  # the same session: the references do not move


def sessions_from(first: date, count: int) -> list[date]:
    days: list[date] = []
    d = first
    while len(days) < count:
        if session_open_close(d) is not None:
            days.append(d)
        d += timedelta(days=1)
    return days


def test_20_session_range_is_null_until_20_sessions_are_complete_then_slides() -> None:
    s = SessionState()
    days = sessions_from(date(2026, 1, 2), 22)
    assert date(2026, 1, 19) not in days  # Martin Luther King day
    refs = []
    for i, d in enumerate(days):  # session i: high 100 + i (10:00 bar), low 50 - i (14:00 bar)
        refs.append(bar(s, ny(d.year, d.month, d.day, 10, 0), 60.0, 100.0 + i, 60.0, 60.0))
        bar(s, ny(d.year, d.month, d.day, 14, 0), 60.0, 60.0, 50.0 - i, 60.0)
        bar(s, ny(d.year, d.month, d.day, 17, 0), 60.0, 500.0, 1.0, 60.0)  # after hours: not counted
    assert all(r["high_20d"] is None and r["low_20d"] is None for r in refs[:20])
    assert (refs[20]["high_20d"], refs[20]["low_20d"]) == (119.0, 31.0)  # sessions 0..19
    assert (refs[21]["high_20d"], refs[21]["low_20d"]) == (120.0, 30.0)  # sessions 1..20
    assert len(s.highs) == 20 and len(s.lows) == 20


class OldSymbolState(msgspec.Struct, array_like=True):
    """SymbolState as checkpoints stored it before the session references."""

    indicators: list[object]
    last_closed_start: int
    open_bars: dict[int, object]


def test_an_older_symbol_state_decodes_with_empty_session_references() -> None:
    raw = msgspec.msgpack.encode(OldSymbolState([3, [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], 42, {}))
    state = msgspec.msgpack.decode(raw, type=SymbolState)
    assert state.last_closed_start == 42 and state.indicators.n == 3 and state.sessions == SessionState()


def test_live_and_history_bars_carry_the_references() -> None:
    state = ShardState()
    thu, mon = ny(2026, 7, 2, 15, 59), ny(2026, 7, 6, 9, 30)
    history = pd.DataFrame([{"symbol": "AAA", "start_ms": thu, "bar_seconds": 60, "open": 10.0, "high": 10.9,
                             "low": 9.9, "close": 10.0, "volume": 5.0, "partition": 0, "offset": 0}])
    (hist,) = add_history(state, history, 60).bars
    assert hist.history and hist.session_open == 10.0 and hist.prev_close is None
    state = load_state(dump_state(state))
    ticks = pd.DataFrame([{"symbol": "AAA", "ts_ms": mon + 1000 * k, "price": p, "size": 1.0, "partition": 0,
                           "offset": k} for k, p in enumerate([10.5, 10.8, 10.4])])
    add_ticks(state, ticks, 0, 60_000)
    (live,) = close_bars(state, mon + 60_000, 60)
    assert (live.session_open, live.prev_close, live.high_20d) == (10.5, 10.0, None)
    assert live.gap_pct == pytest.approx(5.0)
    assert decode(encode(live), Bar) == live
