"""The session series (previous close, today's open, gap, 20-day range, long averages) and the
derived tick series (day and open change), against hand-computed values across the 2026-07-03
holiday, the 2026-11-27 half day and an overnight gap; and rules of several conditions."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from alerts.conditions import bar_values, compile_condition, derived_value, with_derived
from alerts.templates import describe, summary
from events.contract import Bar, Condition
from events.markethours import previous_close_ms, session_open_close

HOUR = 3_600_000


def cond(**kw: object) -> Condition:
    return msgspec.convert(kw, Condition)


def bars_of(days: dict[date, list[tuple[float, float]]], extra: dict[date, list[tuple[int, float]]] | None = None
            ) -> list[Bar]:
    """Hourly bars (open, close) from each session's open, plus ``extra`` bars (hour after the open,
    close) outside it; the references set as the stream sets them: ``prev_close`` the close of the
    last bar that ended by the previous session's close, ``session_open`` the first regular bar's open,
    ``high_20d``/``low_20d`` over the previous sessions' regular bars."""
    raw: list[tuple[int, float, float, bool]] = []
    for day, rows in days.items():
        bounds = session_open_close(day)
        assert bounds is not None, day
        raw += [(bounds[0] + i * HOUR, o, c, True) for i, (o, c) in enumerate(rows)]
        for hours, c in (extra or {}).get(day, []):
            raw.append((bounds[0] + hours * HOUR, c, c, False))
    raw.sort()
    out: list[Bar] = []
    for start, o, c, regular in raw:
        end = start + HOUR
        prev_ms = previous_close_ms(start)
        before = [b for b in out if b.ts <= (prev_ms or 0)]
        today = [b for b in out if b.start_ms >= (prev_ms or 0) and b.session_open is not None]
        opened = today[0].session_open if today else (o if regular else None)
        prev_close = before[-1].close if before else None
        earlier = [b for b in out if b.ts <= (prev_ms or 0) and b.history is False]
        out.append(Bar(id=f"b{start}", ts=end, symbol="AAPL", start_ms=start, bar_seconds=3600, open=o,
                       high=max(o, c), low=min(o, c), close=c, volume=1.0, count=1, vwap=c,
                       prev_close=prev_close, session_open=opened,
                       gap_pct=(opened / prev_close - 1) * 100 if opened and prev_close else None,
                       high_20d=max((b.high for b in earlier), default=None),
                       low_20d=min((b.low for b in earlier), default=None)))
    return out


def test_across_the_holiday_the_previous_close_is_the_last_session_before_it() -> None:
    # Thursday 2 July closes at 100; Friday 3 July is a holiday; Monday 6 July opens at 97 (a gap)
    bars = bars_of({date(2026, 7, 1): [(90.0, 95.0)], date(2026, 7, 2): [(95.0, 99.0), (99.0, 100.0)],
                    date(2026, 7, 6): [(97.0, 98.0)]})
    monday = bars[-1]
    assert monday.prev_close == 100.0 and monday.session_open == 97.0
    assert monday.gap_pct == pytest.approx(-3.0)
    assert monday.high_20d == 100.0 and monday.low_20d == 90.0
    values = {**bar_values(monday), "price": 95.0}
    assert derived_value(values, "day_change_pct") == pytest.approx(-5.0)
    assert derived_value(values, "day_change") == pytest.approx(-5.0)
    assert derived_value(values, "open_change_pct") == pytest.approx((95 / 97 - 1) * 100)
    assert derived_value(values, "open_change") == pytest.approx(-2.0)
    # "down 5 % today" is seen on the tick, not at the bar's close
    down5 = compile_condition(cond(series="day_change_pct", op="less_than", value=-4.9))
    st = down5.new_state()
    seen = [down5.observe({**bar_values(monday), "price": p}, st, 0) for p in (99.0, 96.0, 95.0)]
    assert [o.active for o in seen if o is not None] == [False, False, True]
    assert seen[-1] is not None and seen[-1].value == pytest.approx(-5.0)


def test_the_half_day_closes_at_one_and_a_later_bar_is_not_the_previous_close() -> None:
    # Friday 27 Nov 2026 closes at 13:00 (3.5 h): regular bars 09:30-12:30, an after-hours one at 13:30
    bounds = session_open_close(date(2026, 11, 27))
    assert bounds is not None and (bounds[1] - bounds[0]) == 3.5 * HOUR
    bars = bars_of({date(2026, 11, 27): [(50.0, 51.0), (51.0, 52.0), (52.0, 53.0)],
                    date(2026, 11, 30): [(54.0, 55.0)]},
                   extra={date(2026, 11, 27): [(4, 60.0)]})  # 13:30 after-hours bar at 60
    monday = bars[-1]
    assert monday.prev_close == 53.0  # the close of the bar ending 12:30, inside the half day
    assert monday.gap_pct == pytest.approx((54 / 53 - 1) * 100)
    assert derived_value({**bar_values(monday), "price": 55.65}, "day_change_pct") == pytest.approx(5.0)


def test_a_derived_series_is_unknown_until_its_reference_is() -> None:
    first = bars_of({date(2026, 7, 1): [(90.0, 95.0)]})[0]
    assert first.prev_close is None and first.session_open == 90.0
    values = with_derived({**bar_values(first), "price": 91.0})
    assert values["day_change_pct"] is None and values["open_change"] == pytest.approx(1.0)
    c = compile_condition(cond(series="day_change_pct", op="greater_than", value=0.0))
    assert c.observe(values, c.new_state(), 0) is None
    assert c.sources == {"tick", "bar"} and "prev_close" in c.series_names


DAY = [99.0, 96.0, 94.0, 97.0, 101.0]  # ticks; previous close 100: day change -1, -4, -6, -3, +1 %


@pytest.mark.parametrize(("op", "params", "expected"), [
    ("greater_than", {"value": -5.0}, [True, True, False, True, True]),
    ("less_than", {"value": -5.0}, [False, False, True, False, False]),
    ("crossing", {"value": -5.0}, [False, False, True, True, False]),
    ("crossing_up", {"value": -5.0}, [True, True, False, True, True]),
    ("crossing_down", {"value": -5.0}, [False, False, True, False, False]),
    ("inside_channel", {"lower": -5.0, "upper": 0.0}, [True, True, False, True, False]),
    ("entering_channel", {"lower": -5.0, "upper": 0.0}, [True, True, False, True, False]),
    ("outside_channel", {"lower": -5.0, "upper": 0.0}, [False, False, True, False, True]),
    ("exiting_channel", {"lower": -5.0, "upper": 0.0}, [False, False, True, False, True]),
    ("moving_up", {"value": 6.5, "window_s": 10}, [False, False, False, False, True]),
    ("moving_down", {"value": 4.5, "window_s": 10}, [False, False, True, False, False]),
])
def test_every_operator_on_the_day_change(op: str, params: dict[str, float], expected: list[bool]) -> None:
    c = compile_condition(cond(series="day_change_pct", op=op, **params))
    st = c.new_state()
    got = [c.observe({"price": p, "prev_close": 100.0}, st, 1_800_000_000_000 + i * 1000)
           for i, p in enumerate(DAY)]
    assert [o.active if o is not None else None for o in got] == expected


@pytest.mark.parametrize(("op", "amount", "expected"), [
    ("moving_up_pct", 2.9, [False, False, True]), ("moving_down_pct", 1.9, [False, True, False])])
def test_percent_moves_on_the_long_averages(op: str, amount: float, expected: list[bool]) -> None:
    c = compile_condition(cond(series="sma_200", op=op, value=amount, window_bars=5))
    st = c.new_state()
    assert [c.observe({"sma_200": v}, st, i).active for i, v in enumerate([100.0, 98.0, 101.0])] == expected  # type: ignore[union-attr]


def test_a_new_20_day_high_is_the_price_crossing_up_high_20d() -> None:
    c = compile_condition(cond(series="price", op="crossing_up", other="high_20d"))
    st = c.new_state()
    seen = [c.observe({"price": p, "high_20d": 100.0}, st, 0) for p in (99.0, 100.5)]
    assert [(o.active, o.cross) for o in seen if o is not None] == [(False, False), (True, True)]


def test_the_golden_cross_of_sma_50_and_sma_200() -> None:
    c = compile_condition(cond(series="sma_50", op="crossing_up", other="sma_200"))
    st = c.new_state()
    seen = [c.observe({"sma_50": a, "sma_200": 100.0}, st, 0) for a in (99.0, 101.0)]
    assert [o.cross for o in seen if o is not None] == [False, True]


def test_all_of_several_conditions() -> None:
    rule = cond(series="price", op="greater_than", value=200.0,
                more=[{"series": "rsi_14", "op": "less_than", "value": 30.0},
                      {"series": "sma_50", "op": "crossing_up", "other": "sma_200"}])
    c = compile_condition(rule)
    assert c.kind == "level" and c.sources == {"tick", "bar"}
    st = c.new_state()
    rows = [(201.0, 25.0, 99.0), (201.0, 25.0, 101.0), (201.0, 25.0, 102.0), (199.0, 25.0, 99.0)]
    got = [c.observe({"price": p, "rsi_14": r, "sma_50": s, "sma_200": 100.0}, st, i)
           for i, (p, r, s) in enumerate(rows)]
    # the crossing counts on the observation where it crosses
    assert [o.active if o is not None else None for o in got] == [False, True, False, False]
    assert c.observe({"price": 201.0}, st, 9) is None  # all: unknown while a part is
    assert describe(rule) == "price above 200 and RSI 14 below 30 and SMA 50 crossing up SMA 200"
    # every condition listed, each with its value in its own unit
    assert summary("AAPL", "price", "greater_than", 201.0, 200.0, "firing", rule,
                   {"price": 201.0, "rsi_14": 25.0, "sma_50": 101.0, "sma_200": 100.0}) == (
        "AAPL: all of: price above 200 (now 201.00); RSI 14 below 30 (now 25); "
        "SMA 50 crossing up SMA 200 (now 101.00)")


def test_any_of_several_conditions_reports_the_one_that_holds() -> None:
    rule = cond(series="price", op="greater_than", value=200.0, match="any",
                more=[{"series": "day_change_pct", "op": "less_than", "value": -5.0},
                      {"series": "volume_ratio", "op": "inside_channel", "lower": 2.0, "upper": 3.0}])
    c = compile_condition(rule)
    st = c.new_state()
    quiet = c.observe({"price": 150.0, "prev_close": 155.0, "volume_ratio": 1.0}, st, 0)
    assert quiet is not None and not quiet.active
    fell = c.observe({"price": 140.0, "prev_close": 155.0}, st, 1)  # volume ratio unknown: any still judges
    assert fell is not None and fell.active and fell.value == pytest.approx((140 / 155 - 1) * 100)
    assert fell.part == 1 and fell.threshold == -5.0  # the day change matched: its value, its level
    assert describe(rule) == "price above 200 or day change below -5 % or volume ratio inside 2..3"


def _evaluator_alerts(condition: dict[str, object]) -> list[tuple[str, float | None]]:
    from alerts.engine_state import Evaluator
    from events.contract import Tick
    from tests.alerts.helpers import rule

    ev = Evaluator(bar_seconds=3600)
    ev.upsert_rule(rule(condition))
    monday = bars_of({date(2026, 7, 2): [(95.0, 100.0)], date(2026, 7, 6): [(97.0, 98.0)]})
    out = []
    for b in monday:
        out += ev.on_bar(b)
    for i, p in enumerate((99.0, 94.9, 96.0)):
        out += ev.on_tick(Tick(id=f"t{i}", ts=monday[-1].ts + i * 1000, symbol="AAPL", price=p, size=1.0,
                               source="sim", seq=i))
    return [(a.state, a.value) for a in out]


def test_the_engine_fires_down_5_percent_today_on_the_tick() -> None:
    got = _evaluator_alerts({"series": "day_change_pct", "op": "less_than", "value": -5.0})
    assert [s for s, _ in got] == ["firing", "resolved"]
    assert got[0][1] == pytest.approx(-5.1)


def test_the_engine_fires_a_derived_series_on_the_general_path() -> None:
    # compared with another series, the engine takes the general path (observe): the same numbers
    got = _evaluator_alerts({"series": "day_change_pct", "op": "less_than", "value": -5.0,
                             "also": {"series": "price", "op": "greater_than", "value": 1.0}})
    assert [s for s, _ in got] == ["firing", "resolved"]
    assert got[0][1] == pytest.approx(-5.1)
