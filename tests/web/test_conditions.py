"""Pure validation of rule conditions (no database)."""

from __future__ import annotations

from events.vocabulary import SERIES as SERIES_DEFS
from web.store.conditions import PRESETS, describe, validate_condition


def test_clean_condition_keeps_only_what_the_operator_uses() -> None:
    clean, errors = validate_condition({"series": "price", "op": "greater_than", "value": "101.5", "lower": None, "window_s": ""})
    assert errors == {} and clean == {"series": "price", "op": "greater_than", "value": 101.5}
    clean, errors = validate_condition({"series": "price", "op": "moving_down_pct", "value": 3, "window_bars": "10"})
    assert errors == {} and clean == {"series": "price", "op": "moving_down_pct", "value": 3.0, "window_bars": 10}


def test_each_operator_group_states_what_is_missing() -> None:
    _, e = validate_condition({"series": "close", "op": "crossing"})
    assert "either a level" in e["condition.value"]
    _, e = validate_condition({"series": "close", "op": "entering_channel", "lower": 3})
    assert e == {"condition.upper": "is required for a channel"}
    _, e = validate_condition({"series": "close", "op": "moving_up", "value": 1, "window_bars": 3, "window_s": 60})
    assert "either in bars" in e["condition.window_s"]
    _, e = validate_condition({"series": "close", "op": "moving_up", "value": 1, "window_bars": 0})
    assert "between 1 and 10000" in e["condition.window_bars"]
    _, e = validate_condition({"series": "sma_5", "op": "crossing_up", "other": "sma_5"})
    assert "must differ" in e["condition.other"]
    _, e = validate_condition({"series": "price", "op": "greater_than", "value": float("inf")})
    assert "finite" in e["condition.value"]
    _, e = validate_condition("price > 3")
    assert "condition" in e


def test_also_is_validated_with_its_own_field_names() -> None:
    _, e = validate_condition({"series": "forecast.move_pct", "op": "greater_than", "value": 1,
                               "also": {"series": "forecast.lower_move_pct", "op": "greater_than"}})
    assert "condition.also.value" in e
    _, e = validate_condition({"series": "price", "op": "greater_than", "value": 1,
                               "also": {"series": "price", "op": "less_than", "value": 9,
                                        "also": {"series": "price", "op": "less_than", "value": 8}}})
    assert e["condition.also.also"] == "one extra condition at most"


def test_every_preset_is_valid_and_described() -> None:
    for preset in PRESETS:
        clean, errors = validate_condition(preset["condition"])
        assert errors == {}, preset["key"]
        assert describe(clean).startswith(SERIES_DEFS[clean["series"]].label or "price")
    # the words of the alerts themselves (alerts/templates.py), one wording for pages, API, CLIs and messages
    assert describe({"series": "zscore_20", "op": "outside_channel", "lower": -3.0, "upper": 3.0}) == "z-score 20 outside -3..3"
    assert describe({"series": "price", "op": "moving_down_pct", "value": 3.0, "window_s": 3600}) == \
        "price down at least 3 % in 1 h"
    assert describe({"series": "forecast.move_pct", "op": "greater_than", "value": 1.0,
                     "also": {"series": "forecast.lower_move_pct", "op": "greater_than", "value": 0.0}}) == \
        "forecast move above 1 % and forecast low move above 0 %"


def test_the_form_offers_exactly_the_series_and_operators_the_engine_evaluates() -> None:
    from alerts import conditions as engine

    from typing import get_args

    from events import contract
    from web.store.conditions import OPERATORS, SERIES

    assert set(SERIES) == set(engine.ALL_SERIES)
    assert set(OPERATORS) == set(get_args(contract.Operator))
