"""What a rule condition may say, for the form and the API, all read off the one vocabulary
(:mod:`events.vocabulary`); validation is :func:`events.vocabulary_check.validate` (pure)."""

from __future__ import annotations

from typing import Any

import msgspec

from events.vocabulary import FREQUENCIES, GROUPS, MAX_CONDITIONS, PARAMS
from events.vocabulary import OPERATORS as OPERATOR_DEFS
from events.vocabulary import SERIES as SERIES_DEFS
from events.vocabulary import Condition, ops_in, price_level, series_in
from events.vocabulary_check import FIELDS, as_dict, validate

__all__ = ["BAR_SERIES", "CHANNEL_OPS", "COMPARE_OPS", "FIELDS", "FREQUENCIES", "MOVE_OPS", "OPERATORS", "PRESETS",
           "SERIES", "catalog", "describe", "validate_condition"]

#: series name -> what it is, for the form's explanations
SERIES: dict[str, str] = {name: s.description for name, s in SERIES_DEFS.items()}
BAR_SERIES: dict[str, str] = {name: SERIES[name] for name in series_in("bar")}
COMPARE_OPS = ops_in("compare")
CHANNEL_OPS = ops_in("channel")
MOVE_OPS = ops_in("move")
#: operator name -> what it does (completes "Fires when it ...")
OPERATORS: dict[str, str] = {name: o.description for name, o in OPERATOR_DEFS.items()}

#: the units the pages format values in (web/static/app.js): per series, and the percent operators
UNITS_FOR_PAGES: dict[str, Any] = {"units": {name: s.unit for name, s in SERIES_DEFS.items()},
                                   "percent_ops": [name for name, o in OPERATOR_DEFS.items() if o.percent],
                                   # the series whose values are prices (a chart marker sits at the value)
                                   "price_levels": [name for name in SERIES_DEFS if price_level(name)],
                                   "move_ops": list(ops_in("move")),
                                   # the series ticks update (their alert fired at a tick's price, others at a close)
                                   "tick_series": list(series_in("tick"))}

# Ready-made conditions for the form ("what users expect", DESIGN.md).
PRESETS: list[dict[str, Any]] = [
    {"key": "price_above", "label": "Price above a level", "condition": {"series": "price", "op": "greater_than", "value": 100.0}},
    {"key": "price_below", "label": "Price below a level", "condition": {"series": "price", "op": "less_than", "value": 100.0}},
    {"key": "price_cross", "label": "Price crossing a level", "condition": {"series": "price", "op": "crossing", "value": 100.0}},
    {"key": "move_up_pct", "label": "Up X % within a window", "condition": {"series": "price", "op": "moving_up_pct", "value": 2.0, "window_s": 3600}},
    {"key": "move_down_pct", "label": "Down X % within a window", "condition": {"series": "price", "op": "moving_down_pct", "value": 2.0, "window_s": 3600}},
    {"key": "day_down_pct", "label": "Down X % today (vs the previous close)", "condition": {"series": "day_change_pct", "op": "less_than", "value": -5.0}},
    {"key": "day_up_pct", "label": "Up X % today (vs the previous close)", "condition": {"series": "day_change_pct", "op": "greater_than", "value": 5.0}},
    {"key": "gap_up", "label": "Gap up at the open", "condition": {"series": "gap_pct", "op": "greater_than", "value": 2.0}},
    {"key": "high_20d", "label": "New 20-day high", "condition": {"series": "price", "op": "crossing_up", "other": "high_20d"}},
    {"key": "low_20d", "label": "New 20-day low", "condition": {"series": "price", "op": "crossing_down", "other": "low_20d"}},
    {"key": "golden_cross_50_200", "label": "Golden cross (SMA 50 above SMA 200)", "condition": {"series": "sma_50", "op": "crossing_up", "other": "sma_200"}},
    {"key": "death_cross_50_200", "label": "Death cross (SMA 50 below SMA 200)", "condition": {"series": "sma_50", "op": "crossing_down", "other": "sma_200"}},
    {"key": "dip_oversold", "label": "Price below a level and RSI below 30",
     "condition": {"series": "price", "op": "less_than", "value": 100.0, "match": "all",
                   "more": [{"series": "rsi_14", "op": "less_than", "value": 30.0}]}},
    {"key": "golden_cross", "label": "SMA 5 crosses above SMA 20", "condition": {"series": "sma_5", "op": "crossing_up", "other": "sma_20"}},
    {"key": "death_cross", "label": "SMA 5 crosses below SMA 20", "condition": {"series": "sma_5", "op": "crossing_down", "other": "sma_20"}},
    {"key": "zscore", "label": "Z-score anomaly (beyond ±3σ)", "condition": {"series": "zscore_20", "op": "outside_channel", "lower": -3.0, "upper": 3.0}},
    {"key": "volume_spike", "label": "Volume spike (3× average)", "condition": {"series": "volume_ratio", "op": "greater_than", "value": 3.0}},
    {"key": "volatility", "label": "Volatility above", "condition": {"series": "volatility_20", "op": "greater_than", "value": 1.0}},
    {"key": "rsi_overbought", "label": "RSI above 70 (overbought)", "condition": {"series": "rsi_14", "op": "greater_than", "value": 70.0}},
    {"key": "rsi_oversold", "label": "RSI below 30 (oversold)", "condition": {"series": "rsi_14", "op": "less_than", "value": 30.0}},
    {"key": "forecast_up", "label": "Forecast up more than X % (interval above 0)",
     "condition": {"series": "forecast.move_pct", "op": "greater_than", "value": 1.0,
                   "also": {"series": "forecast.lower_move_pct", "op": "greater_than", "value": 0.0}}},
    {"key": "forecast_down", "label": "Forecast down more than X % (interval below 0)",
     "condition": {"series": "forecast.move_pct", "op": "less_than", "value": -1.0,
                   "also": {"series": "forecast.upper_move_pct", "op": "less_than", "value": 0.0}}},
]



def validate_condition(raw: Any, prefix: str = "condition.", depth: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
    """Check a condition dict; return (clean condition, {field: message}).

    The clean condition holds only the fields its operator uses, so the
    stored JSON is exactly what the engine reads.
    """
    cond, errors = validate(raw, prefix, depth)
    return (as_dict(cond) if cond is not None else {}), errors


def describe(condition: dict[str, Any]) -> str:
    """A condition as stored, in the words of the alerts: ``price crossing up 150``,
    ``price down at least 3 % in 1 h``; a condition that no longer decodes is shown raw."""
    from alerts.templates import describe as words

    try:
        return words(msgspec.convert(condition, Condition))
    except msgspec.ValidationError:
        return f"{condition.get('series')} {condition.get('op')}"


def catalog() -> dict[str, Any]:
    """Everything the rule form and ``GET /api/rules/catalog`` show, from the vocabulary."""
    return {
        "series": SERIES, "operators": OPERATORS, "frequencies": FREQUENCIES, "presets": PRESETS,
        "max_conditions": MAX_CONDITIONS,
        "groups": {group: list(ops_in(group)) for group in GROUPS},
        "params": {group: list(names) for group, names in GROUPS.items()},
        "series_info": {name: {"label": s.label, "unit": s.unit, "source": s.source, "description": s.description}
                        for name, s in SERIES_DEFS.items()},
        "operator_info": {name: {"label": o.label, "words": o.words, "group": o.group, "kind": o.kind,
                                 "percent": o.percent, "description": o.description}
                          for name, o in OPERATOR_DEFS.items()},
        "param_info": {name: {"kind": p.kind, "minimum": p.minimum, "maximum": p.maximum,
                              "description": p.description} for name, p in PARAMS.items()},
    }
