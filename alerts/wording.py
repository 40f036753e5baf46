"""Alerts in plain words: what an alert says, its numbers formatted for its series.

The unit of a number follows from the series and the operator alone (both travel on every Alert):
a move in percent (``moving_*_pct``) is in percent whatever the series; otherwise the series'
unit in the vocabulary says. Names the vocabulary does not know (the stale-feed alert's ``feed``,
a series an older engine does not know yet) are read by pattern.
web/static/app.js (TB.fmt.alertValue) follows the same rules for the pages.

A rule of several conditions is listed whole (``any of: price above 200; RSI 14 below 30``):
an alert of ``any`` names the condition that matched, with its value in that condition's unit;
one of ``all`` gives every condition with its value. :mod:`alerts.templates` re-exports these.
"""

from __future__ import annotations

import math
from typing import Mapping

from alerts.conditions import DERIVED, derived_value
from events.contract import Alert, Condition
from events.vocabulary import OPERATORS, SERIES, unit_of

__all__ = ["OP_WORDS", "alert_summary", "condition_text", "conditions_text", "describe", "fmt_price", "fmt_value",
           "matched_part", "part_value", "rule_number", "series_label", "series_unit", "summary", "window_words"]

#: how a message says each operator, from the vocabulary (events/vocabulary.py)
OP_WORDS = {name: o.words for name, o in OPERATORS.items()}

_LABEL_PREFIXES = (("sma_", "SMA "), ("ema_", "EMA "), ("rsi_", "RSI "), ("volatility_", "volatility "),
                   ("zscore_", "z-score "), ("volume_avg_", "average volume "))


def series_label(series: str) -> str:
    """How a series is named in a sentence: ``RSI 14``, ``SMA 50``; the price itself goes unnamed."""
    known = SERIES.get(series)
    if known is not None:
        return known.label
    for prefix, label in _LABEL_PREFIXES:
        if series.startswith(prefix):
            return label + series[len(prefix):]
    return series.replace("_", " ")


def series_unit(series: str, op: str = "") -> str:
    """``percent``, ``volume``, ``count``, ``ratio``, ``index`` (0-100 oscillators), ``seconds`` or ``price``."""
    unit = unit_of(series, op)
    if unit is not None:
        return unit
    if series.endswith("_pct") or series.startswith("volatility_"):
        return "percent"
    if series.startswith("volume_avg_"):
        return "volume"
    if series.startswith("zscore_"):
        return "ratio"
    if series.startswith("rsi_"):
        return "index"
    if series == "feed":
        return "seconds"
    return "price"


def fmt_price(value: float) -> str:
    """2 decimals from 1 up; below 1, four significant digits (a 0.8709 stock is not 0.87)."""
    if value == 0 or abs(value) >= 1:
        return f"{value:,.2f}"
    text = f"{value:.{max(2, 3 - math.floor(math.log10(abs(value))))}f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.partition(".")[2]))


def fmt_value(value: float | None, series: str, op: str = "") -> str:
    """``value`` of an alert on ``series`` under ``op``, formatted for its unit: ``1.71 %``,
    ``250.00``, ``12,345``, ``3.10``, ``28.4``; ``n/a`` when unknown."""
    if value is None or not math.isfinite(value):
        return "n/a"
    unit = series_unit(series, op)
    if unit == "percent":
        return f"{value:.2f} %"
    if unit in ("volume", "count"):
        return f"{value:,.0f}"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "index":
        return f"{value:.1f}".removesuffix(".0")
    if unit == "seconds":
        return window_words(seconds=value)
    return fmt_price(value)


def rule_number(value: float | None, series: str, op: str = "") -> str:
    """A rule's own number as its author typed it (``250``, ``0.2 %``), not padded to 2 decimals."""
    if value is None:
        return "n/a"
    text = f"{int(value):,}" if value.is_integer() and abs(value) < 1e15 else f"{value:,g}"
    return text + " %" if series_unit(series, op) == "percent" else text


def window_words(seconds: float | None = None, bars: int | None = None) -> str:
    """``1 min``, ``90 s``, ``2 h``, ``1 d``, ``5 bars``, ``1 bar``."""
    if bars is not None:
        return f"{bars} bar" + ("" if bars == 1 else "s")
    if seconds is None:
        return ""
    whole = int(round(seconds))
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def condition_text(series: str, op: str, threshold: float | None, condition: Condition | None = None) -> str:
    """The rule in words: ``price crossing up 250``, ``RSI 14 below 30``, ``price up at least 0.2 %
    in 1 min``, ``z-score 20 outside -3..3``. Without ``condition`` (an Alert alone), a channel is
    named by its nearer bound and a move by its size only."""
    name = series_label(series) or "price"
    words = OP_WORDS.get(op, op.replace("_", " "))
    if condition is not None and condition.other is not None:
        text = f"{name} {words} {series_label(condition.other) or 'price'}"
    elif condition is not None and condition.lower is not None and condition.upper is not None:
        text = f"{name} {words} {condition.lower:g}..{condition.upper:g}"
    elif _group(op) == "channel":
        text = f"{name} {words} the channel"
    else:
        text = f"{name} {words} {rule_number(threshold, series, op)}"
    window = _window_of(condition)
    return f"{text} in {window}" if window and _group(op) == "move" else text


def _group(op: str) -> str:
    known = OPERATORS.get(op)
    return known.group if known is not None else ""


def _rises(op: str) -> bool:
    """A move operator that measures a rise (its words say ``up``)."""
    return OP_WORDS.get(op, "").startswith("up")


def describe(condition: Condition) -> str:
    """A condition in words, ``also`` included: ``SMA 5 crossing up SMA 20``, ``price down at least
    3 % in 1 h and RSI 14 below 30``. The pages, the API's ``description`` and the CLIs show this."""
    if condition.more:  # several conditions: "price above 200 and RSI 14 below 30" ("or" for any)
        return f" {'or' if condition.match == 'any' else 'and'} ".join(describe(p) for p in condition.parts())
    text = condition_text(condition.series, condition.op, condition.value, condition)
    return text if condition.also is None else f"{text} and {describe(condition.also)}"


def _window_of(condition: Condition | None) -> str:
    if condition is None:
        return ""
    return window_words(seconds=condition.window_s, bars=condition.window_bars) if (
        condition.window_s or condition.window_bars) else ""


def summary(symbol: str, series: str, op: str, value: float | None, threshold: float | None,
            state: str = "firing", condition: Condition | None = None,
            evidence: Mapping[str, float | None] | None = None) -> str:
    """One sentence that says what happened, for a subject, a first line, a Slack text:
    ``AAPL up 1.71 % in 1 min (rule: at least 0.2 %)``, ``AAPL crossed above 250.00 (rule: price
    crossing up 250)``, ``AAPL RSI 14 at 28.4, crossing under 30 (rule: RSI 14 crossing down 30)``.
    ``condition`` (the rule's, where the caller has it: the engine) adds the window, the channel's
    bounds and the name of a compared series. A rule of several conditions is listed whole: ``any``
    names the condition that matched (``series``, ``op``: its own), ``all`` gives each with its value
    read from ``evidence`` (the alert's)."""
    if series == "feed":  # the stale-feed system alert: value is the silence, threshold the limit
        if state != "firing":
            return f"{symbol}: ticks are flowing again"
        return f"{symbol}: no ticks for {fmt_value(value, series)} (limit {fmt_value(threshold, series)})"
    if condition is not None and condition.more:
        listed = conditions_text(condition)
        if state == "firing" and condition.match == "any":
            part = matched_part(condition, series, op, threshold)
            return _sentence(symbol, series, op, value, threshold, state, part, listed)
        now = "; ".join(_with_value(p, evidence or {}) for p in condition.parts())
        if state == "firing":
            return f"{symbol}: all of: {now}"
        return (f"{symbol} resolved: none of: {now} holds any more" if condition.match == "any"
                else f"{symbol} resolved: not all of: {now} hold any more")
    return _sentence(symbol, series, op, value, threshold, state, condition, "")


def _sentence(symbol: str, series: str, op: str, value: float | None, threshold: float | None, state: str,
              condition: Condition | None, rule_words: str) -> str:
    """The sentence of one condition; ``rule_words``, when given, is the rule named in it instead."""
    label = series_label(series)
    subject = f"{symbol} {label}".rstrip()
    rule = rule_words or condition_text(series, op, threshold, condition)
    now = fmt_value(value, series, op)
    if condition is not None and condition.other is not None:
        level = f"{series_label(condition.other) or 'price'} at {fmt_value(threshold, condition.other)}"
    else:
        level = fmt_value(threshold, series, op)
    if state != "firing":
        at = f"now {'up' if _rises(op) else 'down'} {now}" if _group(op) == "move" \
            else f"now {now}"
        return f"{symbol} resolved: {rule} no longer holds ({at})"
    if _group(op) == "move":
        window = _window_of(condition)
        direction = "up" if _rises(op) else "down"
        return (f"{subject} {direction} {now}" + (f" in {window}" if window else "")
                + f" (rule: {rule_words or 'at least ' + rule_number(threshold, series, op)})")
    if _group(op) == "compare" and OPERATORS[op].kind != "level":  # the crossings
        up = op == "crossing_up" or (op == "crossing" and value is not None and threshold is not None
                                     and value > threshold)
        if series == "price":  # a tick crosses by cents: the level says it all
            return f"{symbol} crossed {'above' if up else 'below'} {level} (rule: {rule})"
        return f"{subject} at {now}, crossing {'above' if up else 'under'} {level} (rule: {rule})"
    if condition is not None and condition.lower is not None and condition.upper is not None:
        level = f"{fmt_value(condition.lower, series, op)}..{fmt_value(condition.upper, series, op)}"
        return f"{subject} at {now}, {OP_WORDS.get(op, op)} {level} (rule: {rule})"
    if _group(op) == "channel":
        return f"{subject} at {now}, {OP_WORDS[op]} the channel (nearer bound {level})"
    return f"{subject} at {now}, {OP_WORDS.get(op, op.replace('_', ' '))} {level} (rule: {rule})"


def conditions_text(condition: Condition) -> str:
    """The rule's conditions, each listed: ``any of: price above 200; RSI 14 below 30`` (``all of:``);
    a rule of one condition as :func:`describe` says it."""
    if not condition.more:
        return describe(condition)
    return f"{condition.match} of: " + "; ".join(describe(p) for p in condition.parts())


def matched_part(condition: Condition, series: str, op: str, threshold: float | None) -> Condition:
    """The condition of ``condition.parts()`` an alert's ``series``/``op``/``threshold`` come from:
    the first with that series and operator, one whose own number is the threshold first."""
    parts = condition.parts()
    same = [p for p in parts if p.series == series and p.op == op] or parts[:1]
    return next((p for p in same if threshold is not None and threshold in (p.value, p.lower, p.upper)), same[0])


def part_value(part: Condition, evidence: Mapping[str, float | None]) -> float | None:
    """The value of ``part``'s series in ``evidence`` (a derived one computed from it); None for a move
    (its value is the size of the move, not a series value) or when unknown."""
    if _group(part.op) == "move":
        return None
    return derived_value(evidence, part.series) if part.series in DERIVED else evidence.get(part.series)


def _with_value(part: Condition, evidence: Mapping[str, float | None]) -> str:
    value = part_value(part, evidence)
    words = describe(part)
    return words if value is None else f"{words} (now {fmt_value(value, part.series, part.op)})"


def alert_summary(alert: Alert, condition: Condition | None = None) -> str:
    """:func:`summary` of an alert alone: the conditions (a rule of several) and evidence it carries."""
    return summary(alert.symbol, alert.series, alert.op, alert.value, alert.threshold, alert.state,
                   condition if condition is not None else alert.condition, alert.evidence)
