"""What a rule condition may say, explained for the form, and its validation (pure)."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from events import contract

BAR_SERIES: dict[str, str] = {
    "close": "close of the last closed bar",
    "open": "open of the last closed bar",
    "high": "high of the last closed bar",
    "low": "low of the last closed bar",
    "vwap": "volume-weighted average price of the last bar",
    "volume": "shares traded in the last bar",
    "count": "number of trades in the last bar",
    "change_pct": "% change of the bar's close from the previous close",
    "sma_5": "simple moving average of the last 5 closes",
    "sma_10": "simple moving average of the last 10 closes",
    "sma_20": "simple moving average of the last 20 closes",
    "ema_12": "exponential moving average, 12 bars",
    "ema_26": "exponential moving average, 26 bars",
    "macd": "EMA 12 minus EMA 26",
    "volatility_20": "standard deviation of returns over 20 bars, in %",
    "zscore_20": "how many standard deviations the close is from its 20-bar mean",
    "rsi_14": "relative strength index over 14 bars (0-100)",
    "volume_avg_20": "average volume over 20 bars",
    "volume_ratio": "this bar's volume divided by the 20-bar average (2 = twice the usual)",
}
SERIES: dict[str, str] = {
    "price": "last traded price (every tick)",
    **BAR_SERIES,
    "forecast.close": "the model's predicted next close",
    "forecast.move_pct": "predicted move of the next close, in %",
    "forecast.lower": "lower bound of the forecast interval",
    "forecast.upper": "upper bound of the forecast interval",
    "forecast.lower_move_pct": "move to the interval's lower bound, in % (above 0: the whole interval is up)",
    "forecast.upper_move_pct": "move to the interval's upper bound, in % (below 0: the whole interval is down)",
}

COMPARE_OPS = ("greater_than", "less_than", "crossing", "crossing_up", "crossing_down")
CHANNEL_OPS = ("entering_channel", "exiting_channel", "inside_channel", "outside_channel")
MOVE_OPS = ("moving_up", "moving_down", "moving_up_pct", "moving_down_pct")
OPERATORS: dict[str, str] = {
    "greater_than": "is above the level (true while it stays above)",
    "less_than": "is below the level (true while it stays below)",
    "crossing": "crosses the level in either direction",
    "crossing_up": "crosses the level from below",
    "crossing_down": "crosses the level from above",
    "entering_channel": "moves from outside into the range lower..upper",
    "exiting_channel": "leaves the range lower..upper",
    "inside_channel": "is within lower..upper",
    "outside_channel": "is outside lower..upper",
    "moving_up": "rises by at least the amount within the window",
    "moving_down": "falls by at least the amount within the window",
    "moving_up_pct": "rises by at least the % within the window",
    "moving_down_pct": "falls by at least the % within the window",
}
FREQUENCIES: dict[str, str] = {
    "once": "fire once, then disable the rule",
    "once_per_bar": "at most once per bar, as soon as the condition becomes true",
    "once_per_bar_close": "at most once per bar, judged when the bar closes",
    "every_time": "every time the condition becomes true again (respecting the cooldown)",
}

# Ready-made conditions for the form ("what users expect", DESIGN.md).
PRESETS: list[dict[str, Any]] = [
    {"key": "price_above", "label": "Price above a level", "condition": {"series": "price", "op": "greater_than", "value": 100.0}},
    {"key": "price_below", "label": "Price below a level", "condition": {"series": "price", "op": "less_than", "value": 100.0}},
    {"key": "price_cross", "label": "Price crossing a level", "condition": {"series": "price", "op": "crossing", "value": 100.0}},
    {"key": "move_up_pct", "label": "Up X % within a window", "condition": {"series": "price", "op": "moving_up_pct", "value": 2.0, "window_s": 3600}},
    {"key": "move_down_pct", "label": "Down X % within a window", "condition": {"series": "price", "op": "moving_down_pct", "value": 2.0, "window_s": 3600}},
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

FIELDS = ("series", "op", "value", "other", "lower", "upper", "window_bars", "window_s", "also")


def _number(raw: Any, name: str, errors: dict[str, str], prefix: str) -> float | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        errors[prefix + name] = "must be a number"
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        errors[prefix + name] = f"must be a number, got {raw!r}"
        return None
    if not math.isfinite(value):
        errors[prefix + name] = "must be a finite number"
        return None
    return value


def _integer(raw: Any, name: str, lo: int, hi: int, errors: dict[str, str], prefix: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
    except (TypeError, ValueError):
        errors[prefix + name] = f"must be a whole number, got {raw!r}"
        return None
    if not lo <= value <= hi:
        errors[prefix + name] = f"must be between {lo} and {hi}"
        return None
    return value


def validate_condition(raw: Any, prefix: str = "condition.", depth: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
    """Check a condition dict; return (clean condition, {field: message}).

    The clean condition holds only the fields its operator uses, so the
    stored JSON is exactly what the engine reads.
    """
    errors: dict[str, str] = {}
    if not isinstance(raw, dict):
        return {}, {prefix.rstrip("."): "must be an object with series and op"}
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        errors[prefix.rstrip(".")] = f"unknown field(s): {', '.join(unknown)}"
    series = raw.get("series")
    op = raw.get("op")
    if series not in SERIES:
        errors[prefix + "series"] = f"choose one of: {', '.join(SERIES)}" if series else "is required"
    if op not in OPERATORS:
        errors[prefix + "op"] = f"choose one of: {', '.join(OPERATORS)}" if op else "is required"
    value = _number(raw.get("value"), "value", errors, prefix)
    lower = _number(raw.get("lower"), "lower", errors, prefix)
    upper = _number(raw.get("upper"), "upper", errors, prefix)
    other = raw.get("other") or None
    window_bars = _integer(raw.get("window_bars"), "window_bars", 1, 10_000, errors, prefix)
    window_s = _integer(raw.get("window_s"), "window_s", 1, 31 * 86_400, errors, prefix)
    clean: dict[str, Any] = {"series": series, "op": op}
    if op in COMPARE_OPS:
        if other is not None and other not in SERIES:
            errors[prefix + "other"] = f"must name a series: {', '.join(SERIES)}"
        elif other is not None and other == series:
            errors[prefix + "other"] = "must differ from the series it is compared with"
        if (value is None) == (other is None) and prefix + "value" not in errors:
            errors[prefix + "value"] = "give either a level (value) or another series (other), not both"
        if value is not None:
            clean["value"] = value
        if other is not None:
            clean["other"] = other
    elif op in CHANNEL_OPS:
        if lower is None and prefix + "lower" not in errors:
            errors[prefix + "lower"] = "is required for a channel"
        if upper is None and prefix + "upper" not in errors:
            errors[prefix + "upper"] = "is required for a channel"
        if lower is not None and upper is not None:
            if lower >= upper:
                errors[prefix + "upper"] = "must be greater than lower"
            clean.update(lower=lower, upper=upper)
    elif op in MOVE_OPS:
        if value is None:
            errors.setdefault(prefix + "value", "is required: the size of the move")
        elif value <= 0:
            errors[prefix + "value"] = "must be greater than 0 (the direction is in the operator)"
        else:
            clean["value"] = value
        if (window_bars is None) == (window_s is None):
            if prefix + "window_bars" not in errors and prefix + "window_s" not in errors:
                errors[prefix + "window_s"] = "give the window either in bars (window_bars) or in seconds (window_s)"
        elif window_bars is not None:
            clean["window_bars"] = window_bars
        else:
            clean["window_s"] = window_s
    also = raw.get("also")
    if also:
        if depth >= 1:
            errors[prefix + "also"] = "one extra condition at most"
        else:
            also_clean, also_errors = validate_condition(also, prefix + "also.", depth + 1)
            errors.update(also_errors)
            clean["also"] = also_clean
    if not errors:
        try:  # the contract is the final word on types and ranges
            msgspec.convert(clean, contract.Condition)
        except msgspec.ValidationError as exc:
            errors[prefix.rstrip(".")] = str(exc)
    return clean, errors


def _window(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def describe(condition: dict[str, Any]) -> str:
    """A one-line human description: ``price crossing up 150``, ``price moving down 3 % within 1 h``."""
    op = condition.get("op", "")
    text = f"{condition.get('series')} {op.removesuffix('_pct').replace('_', ' ')}"
    if op in CHANNEL_OPS:
        text += f" {condition.get('lower'):g}..{condition.get('upper'):g}"
    elif condition.get("other"):
        text += f" {condition['other']}"
    elif condition.get("value") is not None:
        text += f" {condition['value']:g}" + (" %" if op.endswith("_pct") else "")
    if condition.get("window_bars"):
        text += f" within {condition['window_bars']} bars"
    if condition.get("window_s"):
        text += f" within {_window(condition['window_s'])}"
    if condition.get("also"):
        text += " and " + describe(condition["also"])
    return text
