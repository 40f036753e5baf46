"""Every operator, observed on plain values (no broker, nothing faked)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from alerts.conditions import ConditionError, compile_condition, prediction_values, series_source
from events.contract import Condition
from tests.alerts.helpers import prediction


def cond(**kw: object) -> Condition:
    return msgspec.convert(kw, Condition)


def run(c: Condition, series: list[Any], key: str = "price", step_ms: int = 1000) -> list[tuple[bool, bool] | None]:
    compiled = compile_condition(c, bar_seconds=60)
    state = compiled.new_state()
    out: list[tuple[bool, bool] | None] = []
    for i, v in enumerate(series):
        values = v if isinstance(v, dict) else {key: v}
        obs = compiled.observe(values, state, 1_000_000 + i * step_ms)
        out.append((obs.active, obs.cross) if obs is not None else None)
    return out


def active(c: Condition, series: list[Any], **kw: Any) -> list[bool | None]:
    return [None if o is None else o[0] for o in run(c, series, **kw)]


def test_greater_and_less_than_a_constant() -> None:
    assert active(cond(series="price", op="greater_than", value=10), [9, 10, 11]) == [False, False, True]
    assert active(cond(series="price", op="less_than", value=10), [9, 10, 11]) == [True, False, False]


def test_compare_with_another_series_and_warm_up() -> None:
    c = cond(series="sma_5", op="greater_than", other="sma_20")
    values = [{"sma_5": 1.0, "sma_20": None}, {"sma_5": 2.0, "sma_20": 1.5}, {"sma_5": 1.0, "sma_20": 1.5}]
    assert active(c, values) == [None, True, False]


def test_crossing_reports_each_side_change_but_not_touching() -> None:
    c = cond(series="price", op="crossing", value=150)
    # 150 exactly keeps the previous side: 149 -> 150 -> 149 is no cross
    assert [o[1] if o else None for o in run(c, [149, 150, 149, 151, 152, 149])] == [False, False, False, True, False, True]


def test_crossing_up_and_down_are_levels_that_the_lifecycle_arms() -> None:
    assert active(cond(series="price", op="crossing_up", value=150), [149, 151, 150]) == [False, True, False]
    assert active(cond(series="price", op="crossing_down", value=150), [151, 149, 150]) == [False, True, False]


def test_channels() -> None:
    series = [5, 10, 15, 20, 25]
    inside = cond(series="price", op="inside_channel", lower=10, upper=20)
    outside = cond(series="price", op="outside_channel", lower=10, upper=20)
    entering = cond(series="price", op="entering_channel", lower=10, upper=20)
    exiting = cond(series="price", op="exiting_channel", lower=10, upper=20)
    assert active(inside, series) == [False, True, True, True, False]
    assert active(outside, series) == [True, False, False, False, True]
    assert active(entering, series) == active(inside, series)
    assert active(exiting, series) == active(outside, series)


def test_moving_up_by_amount_within_bars() -> None:
    c = cond(series="close", op="moving_up", value=5, window_bars=2)
    # 100 -> 103 -> 106 (6 up from 2 bars ago) -> 108 (5 up from 103, 2 bars ago) -> 109 (3 up from 106)
    assert active(c, [100, 103, 106, 108, 109], key="close") == [False, False, True, True, False]


def test_moving_down_pct_within_time_window() -> None:
    c = cond(series="price", op="moving_down_pct", value=2, window_s=10)
    # one observation per second: a 2 % drop within 10 s fires; the same drop spread over 20 s does not
    fast = active(c, [100, 99, 97.9])
    slow = active(c, [100 - 0.1 * i for i in range(25)])
    assert fast == [False, False, True]
    assert not any(slow)


def test_moving_up_pct_and_moving_down_amount() -> None:
    assert active(cond(series="price", op="moving_up_pct", value=1, window_s=5), [100, 100.5, 101.2]) == [False, False, True]
    assert active(cond(series="price", op="moving_down", value=3, window_s=5), [100, 98, 96.9]) == [False, False, True]


def test_window_in_bars_for_price_is_bar_seconds_long() -> None:
    c = cond(series="price", op="moving_up", value=5, window_bars=1)
    # ticks 30 s apart: 106 at +60 s is 6 up from t0 (within one 60 s bar); 107 at +90 s and 110 at +120 s
    # are only 3 and 4 up from the lowest price of the last 60 s
    assert active(c, [100, 104, 106, 107, 110], step_ms=30_000) == [False, False, True, False, False]


def test_also_condition_must_hold_together() -> None:
    c = cond(series="forecast.move_pct", op="greater_than", value=1.0,
             also={"series": "forecast.lower_move_pct", "op": "greater_than", "value": 0.0})
    up_sure = prediction_values(prediction(100, 102, 100.5, 103.5, 0))
    up_unsure = prediction_values(prediction(100, 102, 99, 105, 1))
    flat = prediction_values(prediction(100, 100.5, 100.1, 101, 2))
    assert active(c, [up_sure, up_unsure, flat]) == [True, False, False]


def test_forecast_series() -> None:
    values = prediction_values(prediction(200, 202, 198, 206, 0))
    assert values["forecast.move_pct"] == pytest.approx(1.0)
    assert values["forecast.lower_move_pct"] == pytest.approx(-1.0)
    assert values["forecast.upper_move_pct"] == pytest.approx(3.0)
    assert values["forecast.close"] == 202


@pytest.mark.parametrize("bad, message", [
    ({"series": "price", "op": "greater_than"}, "either a level"),
    ({"series": "price", "op": "greater_than", "value": 1, "other": "sma_5"}, "either a level"),
    ({"series": "nope", "op": "greater_than", "value": 1}, "unknown series"),
    ({"series": "price", "op": "crossing", "other": "sma_99"}, "unknown series"),
    ({"series": "sma_5", "op": "crossing_up", "other": "sma_5"}, "must differ"),
    ({"series": "price", "op": "inside_channel", "lower": 1}, "upper: is required for a channel"),
    ({"series": "price", "op": "inside_channel", "lower": 2, "upper": 1}, "must be greater than lower"),
    ({"series": "price", "op": "inside_channel", "lower": 2, "upper": 2}, "must be greater than lower"),
    ({"series": "price", "op": "moving_up", "window_s": 10}, "the size of the move"),
    ({"series": "price", "op": "moving_up", "value": -1, "window_s": 10}, "greater than 0"),
    ({"series": "price", "op": "moving_up", "value": 1}, "either in bars"),
    ({"series": "price", "op": "greater_than", "value": 1,
      "also": {"series": "price", "op": "less_than", "value": 9, "also": {"series": "price", "op": "less_than",
                                                                            "value": 8}}}, "one extra condition"),
])
def test_nonsense_conditions_are_refused_with_a_clear_message(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        compile_condition(cond(**bad))


def test_series_sources() -> None:
    assert series_source("price") == "tick"
    assert series_source("rsi_14") == "bar"
    assert series_source("forecast.upper") == "prediction"
