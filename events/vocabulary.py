"""The rule vocabulary: every series and every operator a condition may use, defined once.

A condition reads ``series <op> value|other`` (compare), ``series <op> lower..upper``
(channel) or ``series moves by value within a window`` (move). This module is the one
place that says which series and operators exist, what each means, which parameters each
operator takes (types, bounds), how its numbers are formatted and how it is worded.
Everything else derives from it:

- the engine's compile step (``alerts/conditions.py``) asks :func:`problems` before it
  accepts a condition, and reads each operator's ``kind`` and each series' ``source``;
- the web form, the API and both CLIs call :func:`validate` (``web/store/conditions.py``),
  which ends in the same :func:`problems`, so the engine and the web cannot disagree;
- the OpenAPI schema of a condition is :func:`condition_schema`;
- alert wording and number formats (``alerts/templates.py``) read ``label``, ``words`` and
  ``unit``.

To add a series: one :class:`SeriesDef` line in :data:`SERIES` (and the value itself on
the event that carries it). To add an operator: one :class:`OperatorDef` line in
:data:`OPERATORS` (in a group whose parameters it takes) and its evaluation in
``alerts/conditions.py``. See ``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

__all__ = [
    "Condition", "FREQUENCIES", "MAX_CONDITIONS", "Match", "Frequency", "GROUPS", "OPERATORS", "OperatorDef", "OperatorName", "PARAMS",
    "ParamDef", "SERIES", "SeriesDef", "Unit", "group_of", "ops_in", "price_level", "series_in",
    "unit_of",
]

Unit = Literal["price", "percent", "volume", "count", "ratio", "index"]
Source = Literal["tick", "bar", "prediction"]
Group = Literal["compare", "channel", "move"]
Kind = Literal["level", "armed", "cross"]


@dataclass(frozen=True, slots=True)
class SeriesDef:
    """One series: ``source`` is the event that updates it, ``label`` its name in a sentence
    (``RSI 14``; the price itself goes unnamed), ``unit`` how its values are formatted."""

    name: str
    source: Source
    unit: Unit
    label: str
    description: str
    #: a tick-level series derived from the price and this bar series (``prev_close``): the
    #: difference, in percent of the reference when ``unit`` is percent (alerts/conditions.py)
    reference: str = ""
    #: a difference of two prices (MACD): in the price's currency, but no price level on a chart
    difference: bool = False


@dataclass(frozen=True, slots=True)
class ParamDef:
    """One parameter of a condition: ``kind`` number (finite float), integer or series (a name)."""

    name: str
    kind: Literal["number", "integer", "series"]
    description: str
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True, slots=True)
class OperatorDef:
    """One operator. ``kind``: ``level`` (true while it holds), ``armed`` (fires only after the
    opposite was seen) or ``cross`` (the side changed). ``words`` is how a message says it
    (``above``, ``crossing up``), ``label`` how the form lists it. ``direction`` is +1 when a
    firing value lies above the threshold (a recovery level sits below it), -1 the other way,
    0 when a recovery level makes no sense. ``percent``: its amount is a percentage."""

    name: str
    group: Group
    kind: Kind
    words: str
    label: str
    description: str
    direction: int = 0
    percent: bool = False


def _bar(name: str, unit: Unit, label: str, description: str) -> SeriesDef:
    return SeriesDef(name, "bar", unit, label, description)


def _change(name: str, unit: Unit, reference: str, label: str, description: str) -> SeriesDef:
    return SeriesDef(name, "tick", unit, label, description, reference)


def _forecast(name: str, unit: Unit, label: str, description: str) -> SeriesDef:
    return SeriesDef(name, "prediction", unit, label, description)


SERIES: dict[str, SeriesDef] = {s.name: s for s in (
    SeriesDef("price", "tick", "price", "", "last traded price (every tick)"),
    _bar("close", "price", "close", "close of the last closed bar"),
    _bar("open", "price", "open", "open of the last closed bar"),
    _bar("high", "price", "high", "high of the last closed bar"),
    _bar("low", "price", "low", "low of the last closed bar"),
    _bar("vwap", "price", "VWAP", "volume-weighted average price of the last bar"),
    _bar("volume", "volume", "volume", "shares traded in the last bar"),
    _bar("count", "count", "trades", "number of trades in the last bar"),
    _bar("change_pct", "percent", "bar change", "% change of the bar's close from the previous close"),
    _bar("sma_5", "price", "SMA 5", "simple moving average of the last 5 closes"),
    _bar("sma_10", "price", "SMA 10", "simple moving average of the last 10 closes"),
    _bar("sma_20", "price", "SMA 20", "simple moving average of the last 20 closes"),
    _bar("ema_12", "price", "EMA 12", "exponential moving average, 12 bars"),
    _bar("ema_26", "price", "EMA 26", "exponential moving average, 26 bars"),
    SeriesDef("macd", "bar", "price", "MACD", "EMA 12 minus EMA 26", difference=True),
    _bar("volatility_20", "percent", "volatility 20", "standard deviation of returns over 20 bars, in %"),
    _bar("zscore_20", "ratio", "z-score 20", "how many standard deviations the close is from its 20-bar mean"),
    _bar("rsi_14", "index", "RSI 14", "relative strength index over 14 bars (0-100)"),
    _bar("volume_avg_20", "volume", "average volume 20", "average volume over 20 bars"),
    _bar("volume_ratio", "ratio", "volume ratio",
         "this bar's volume divided by the 20-bar average (2 = twice the usual)"),
    _bar("sma_50", "price", "SMA 50", "simple moving average of the last 50 closes"),
    _bar("sma_200", "price", "SMA 200", "simple moving average of the last 200 closes"),
    _bar("ema_50", "price", "EMA 50", "exponential moving average, 50 bars"),
    _bar("ema_200", "price", "EMA 200", "exponential moving average, 200 bars"),
    _bar("prev_close", "price", "previous close", "close of the previous regular session"),
    _bar("session_open", "price", "today's open", "open of today's regular session"),
    _bar("gap_pct", "percent", "gap", "today's open against the previous session's close, in %"),
    _bar("high_20d", "price", "20-day high", "highest high of the previous 20 sessions (today excluded)"),
    _bar("low_20d", "price", "20-day low", "lowest low of the previous 20 sessions (today excluded)"),
    _change("day_change_pct", "percent", "prev_close", "day change",
            "the price against the previous session's close, in % (every tick)"),
    _change("day_change", "price", "prev_close", "day change", "the price minus the previous session's close"),
    _change("open_change_pct", "percent", "session_open", "change since the open",
            "the price against today's open, in % (every tick)"),
    _change("open_change", "price", "session_open", "change since the open", "the price minus today's open"),
    _forecast("forecast.close", "price", "forecast close", "the model's predicted next close"),
    _forecast("forecast.move_pct", "percent", "forecast move", "predicted move of the next close, in %"),
    _forecast("forecast.lower", "price", "forecast low", "lower bound of the forecast interval"),
    _forecast("forecast.upper", "price", "forecast high", "upper bound of the forecast interval"),
    _forecast("forecast.lower_move_pct", "percent", "forecast low move",
              "move to the interval's lower bound, in % (above 0: the whole interval is up)"),
    _forecast("forecast.upper_move_pct", "percent", "forecast high move",
              "move to the interval's upper bound, in % (below 0: the whole interval is down)"),
)}

PARAMS: dict[str, ParamDef] = {p.name: p for p in (
    ParamDef("value", "number", "the level (compare) or the size of the move (move, above 0)"),
    ParamDef("other", "series", "another series to compare with, instead of a level"),
    ParamDef("lower", "number", "the channel's lower bound"),
    ParamDef("upper", "number", "the channel's upper bound (above lower)"),
    ParamDef("window_bars", "integer", "how far back a move is measured, in bars", 1, 10_000),
    ParamDef("window_s", "integer", "how far back a move is measured, in seconds", 1, 31 * 86_400),
)}

#: the parameters each group of operators takes (the form shows exactly these)
GROUPS: dict[Group, tuple[str, ...]] = {
    "compare": ("value", "other"),
    "channel": ("lower", "upper"),
    "move": ("value", "window_bars", "window_s"),
}

OPERATORS: dict[str, OperatorDef] = {o.name: o for o in (
    OperatorDef("greater_than", "compare", "level", "above", "greater than",
                "is above the level (true while it stays above)", direction=1),
    OperatorDef("less_than", "compare", "level", "below", "less than",
                "is below the level (true while it stays below)", direction=-1),
    OperatorDef("crossing", "compare", "cross", "crossing", "crossing", "crosses the level in either direction"),
    OperatorDef("crossing_up", "compare", "armed", "crossing up", "crossing up", "crosses the level from below",
                direction=1),
    OperatorDef("crossing_down", "compare", "armed", "crossing down", "crossing down",
                "crosses the level from above", direction=-1),
    OperatorDef("entering_channel", "channel", "armed", "entering", "entering channel",
                "moves from outside into the range lower..upper"),
    OperatorDef("exiting_channel", "channel", "armed", "exiting", "exiting channel", "leaves the range lower..upper"),
    OperatorDef("inside_channel", "channel", "level", "inside", "inside channel", "is within lower..upper"),
    OperatorDef("outside_channel", "channel", "level", "outside", "outside channel", "is outside lower..upper"),
    OperatorDef("moving_up", "move", "level", "up at least", "moving up",
                "rises by at least the amount within the window"),
    OperatorDef("moving_down", "move", "level", "down at least", "moving down",
                "falls by at least the amount within the window"),
    OperatorDef("moving_up_pct", "move", "level", "up at least", "moving up %",
                "rises by at least the % within the window", percent=True),
    OperatorDef("moving_down_pct", "move", "level", "down at least", "moving down %",
                "falls by at least the % within the window", percent=True),
)}

FREQUENCIES: dict[str, str] = {
    "once": "fire once, then disable the rule",
    "once_per_bar": "at most once per bar, as soon as the condition becomes true",
    "once_per_bar_close": "at most once per bar, judged when the bar closes",
    "every_time": "every time the condition becomes true again (respecting the cooldown)",
}

# The names as types: msgspec refuses any other name when it decodes an event; mypy sees str.
if TYPE_CHECKING:
    OperatorName = str
    Frequency = str
else:
    OperatorName = Literal[tuple(OPERATORS)]
    Frequency = Literal[tuple(FREQUENCIES)]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
OptFloat = float | None


WindowBars = Annotated[int, msgspec.Meta(ge=PARAMS["window_bars"].minimum, le=PARAMS["window_bars"].maximum)]
WindowS = Annotated[int, msgspec.Meta(ge=PARAMS["window_s"].minimum, le=PARAMS["window_s"].maximum)]


MAX_CONDITIONS = 5  # conditions in one rule: this one and up to four in ``more``
Match = Literal["all", "any"]


class Condition(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """``series <op> value|other`` (or a channel ``lower..upper``, or a move within a window).

    Several conditions in one rule: this one and the ones in ``more`` (up to
    :data:`MAX_CONDITIONS` in all), of which ``match`` says whether all or any must hold.
    A condition written before ``more`` existed is a rule of one condition; ``also`` is
    the older way to say "and this one too" (all of two).

    ``series`` and ``other`` name a series of :data:`SERIES`: ``price`` (last tick), a field
    of :class:`~events.contract.Bar` (``close``, ``sma_5``, ``rsi_14``, ...) or of a forecast
    (``forecast.move_pct``, ...). The types here are what a decoder checks; what the
    combination means is checked by :func:`events.vocabulary_check.problems`.
    """

    series: Name
    op: OperatorName
    value: OptFloat = None
    other: Name | None = None
    lower: OptFloat = None
    upper: OptFloat = None
    window_bars: WindowBars | None = None
    window_s: WindowS | None = None
    # an extra condition that must hold at the same time (e.g. forecast interval above 0)
    also: "Condition | None" = None
    more: Annotated[list["Condition"], msgspec.Meta(max_length=MAX_CONDITIONS - 1)] = []
    match: Match = "all"

    def parts(self) -> list["Condition"]:
        """Every condition of the rule, this one first (without ``more``)."""
        if not self.more:
            return [self]
        return [msgspec.structs.replace(self, more=[], match="all"), *self.more]


def group_of(op: str) -> Group:
    return OPERATORS[op].group


def ops_in(group: Group) -> tuple[str, ...]:
    return tuple(name for name, o in OPERATORS.items() if o.group == group)


def series_in(source: Source) -> tuple[str, ...]:
    return tuple(name for name, s in SERIES.items() if s.source == source)


def price_level(series: str, op: str = "") -> bool:
    """Whether a value of ``series`` under ``op`` is a price level (a chart marker may sit at it): a
    price series, not a difference (MACD, a day change) and not the size of a move."""
    s, o = SERIES.get(series), OPERATORS.get(op)
    return (s is not None and s.unit == "price" and not s.reference and not s.difference
            and (o is None or o.group != "move"))


def unit_of(series: str, op: str = "") -> Unit | None:
    """The unit of a value of ``series`` under ``op``: a percent move is in percent whatever the
    series; otherwise the series says. None for a name that is no series (a system alert)."""
    o = OPERATORS.get(op)
    if o is not None and o.percent:
        return "percent"
    s = SERIES.get(series)
    return s.unit if s is not None else None
