"""Pure evaluation of one condition over a symbol's latest series values.

A :class:`CompiledCondition` is built once per rule from a contract
:class:`~events.contract.Condition`. ``observe(values, state)`` reads the
latest values (``price``, bar fields, ``forecast.*``), updates the
per-(rule, symbol) :class:`CondState` (previous side for crossings, the
sliding window for moves) and returns an :class:`Observation`, or None
while a series it needs is still unknown (indicator warm-up).

Operators, in three kinds:

- level, true while it holds: ``greater_than``, ``less_than``,
  ``inside_channel``, ``outside_channel``, ``moving_up``/``moving_down``
  (the series rose/fell by ``value`` from its lowest/highest point within the
  window), ``moving_up_pct``/``moving_down_pct`` (the same in percent);
- armed, true while it holds but able to fire only after the opposite was
  seen: ``crossing_up`` (above after at-or-below), ``crossing_down``,
  ``entering_channel`` (inside after outside), ``exiting_channel``;
- ``crossing``: the side of ``series`` relative to the threshold changed.

Derived series (``day_change_pct``, ``open_change``, ...: a :class:`~events.vocabulary.SeriesDef`
with a ``reference``) are computed here from the latest price and the latest bar's reference
(``prev_close``, ``session_open``), on every tick; unknown while the reference is.

Several conditions in one rule (``Condition.more``, ``match`` all or any) compile into one
:class:`CompiledCondition` with ``parts``: a level part counts while it holds, an armed or
crossing part on the observation where it crosses; the whole is a ``level`` condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import msgspec

from events.vocabulary import OPERATORS, SERIES, Condition, ops_in, series_in
from events.vocabulary_check import problems

__all__ = [
    "ARMED_OPS", "CondState", "CompiledCondition", "Observation", "compile_condition",
    "series_source", "ConditionError", "DERIVED", "DOWN_OPS", "UP_OPS", "derived_value", "with_derived",
]

# every set below is read off the vocabulary (events/vocabulary.py): an operator is defined there once
LEVEL_OPS = frozenset(n for n, o in OPERATORS.items() if o.kind == "level")
ARMED_OPS = frozenset(n for n, o in OPERATORS.items() if o.kind == "armed")
CHANNEL_OPS = frozenset(ops_in("channel"))
MOVING_OPS = frozenset(ops_in("move"))
COMPARE_OPS = frozenset(ops_in("compare"))
# the direction a firing value lies in, for the recovery threshold (hysteresis)
UP_OPS = frozenset(n for n, o in OPERATORS.items() if o.direction > 0)
DOWN_OPS = frozenset(n for n, o in OPERATORS.items() if o.direction < 0)

BAR_SERIES = frozenset(series_in("bar"))
FORECAST_SERIES = frozenset(series_in("prediction"))
ALL_SERIES = frozenset(SERIES)
#: derived series -> (reference series, in percent of it)
DERIVED = {n: (s.reference, s.unit == "percent") for n, s in SERIES.items() if s.reference}


def derived_value(values: Mapping[str, float | None], name: str) -> float | None:
    """A derived series from the latest ``price`` and its reference; None while either is unknown."""
    reference, percent = DERIVED[name]
    price, ref = values.get("price"), values.get(reference)
    if price is None or ref is None or (percent and ref == 0):
        return None
    return (price / ref - 1.0) * 100.0 if percent else price - ref


def with_derived(values: dict[str, float | None]) -> dict[str, float | None]:
    """``values`` with every derived series set from them (in place; returned for convenience)."""
    for name in DERIVED:
        values[name] = derived_value(values, name)
    return values


def _get(values: Mapping[str, float | None], name: str) -> float | None:
    return derived_value(values, name) if name in DERIVED else values.get(name)


class ConditionError(ValueError):
    """A condition that is well-typed but makes no sense (unknown series, missing operand)."""


def series_source(series: str) -> str:
    """Which event updates ``series``: ``tick``, ``bar`` or ``prediction``."""
    found = SERIES.get(series)
    if found is None:
        raise ConditionError(f"unknown series {series!r}; choose one of: {', '.join(SERIES)}")
    return found.source


class CondState(msgspec.Struct, array_like=True):
    """Mutable per-(rule, symbol) memory of a condition; serialised in the engine changelog."""

    side: int = 0            # last strict side of series vs threshold: 1 above, -1 below, 0 unknown
    n: int = 0               # how many observations of the window series so far (bar-count windows)
    window: list[list[float]] = []   # monotonic deque of [key, value]: key = ts_ms or observation number
    also: "CondState | None" = None
    more: "list[CondState]" = []     # one per part of a rule of several conditions


@dataclass(slots=True)
class Observation:
    active: bool          # the condition holds now
    cross: bool           # the side changed on this observation (``crossing`` fires on it)
    side: int
    value: float          # what is reported as the alert's value
    threshold: float | None
    series_value: float   # the raw series value (for the recovery threshold)
    #: which condition of the rule ``value`` and ``threshold`` belong to: its index in
    #: ``Condition.parts()`` (the first holding one for ``any``, else the first known one)
    part: int = 0


class CompiledCondition:
    """One condition, ready to observe. ``sources`` = the event kinds that update its series."""

    __slots__ = ("cond", "op", "series", "other", "const", "lower", "upper", "amount", "window_bars",
                 "window_ms", "also", "sources", "kind", "series_names", "parts", "any")
    series_names: frozenset[str]
    also: "CompiledCondition | None"
    parts: "tuple[CompiledCondition, ...]"
    sources: frozenset[str]
    kind: str

    def __init__(self, cond: Condition, bar_seconds: int) -> None:
        self.cond = cond
        self.parts = ()
        self.any = cond.match == "any"
        if cond.more:
            found = problems(cond, prefix="")
            if found:
                raise ConditionError("; ".join(f"{field}: {message}" for field, message in found.items()))
            self.parts = tuple(CompiledCondition(part, bar_seconds) for part in cond.parts())
            self.op, self.series, self.also, self.kind = cond.op, cond.series, None, "level"
            self.series_names = frozenset().union(*(p.series_names for p in self.parts))
            self.sources = frozenset().union(*(p.sources for p in self.parts))
            return
        self.op = cond.op
        self.series = cond.series
        self.other = cond.other
        self.const = cond.value
        self.lower = cond.lower
        self.upper = cond.upper
        self.amount = cond.value
        self.window_bars: int | None = None
        self.window_ms: int | None = None
        found = problems(cond, prefix="")  # the vocabulary's one check, the same the web and the CLIs run
        if found:
            raise ConditionError("; ".join(f"{field}: {message}" for field, message in found.items()))
        names = {cond.series}
        if cond.series in DERIVED:  # its reference travels on the bar: the alert shows it as evidence
            names.add(DERIVED[cond.series][0])
        if cond.op in COMPARE_OPS and cond.other is not None:
            names.add(cond.other)
            if cond.other in DERIVED:
                names.add(DERIVED[cond.other][0])
        elif cond.op in MOVING_OPS:
            if cond.window_s is not None:
                self.window_ms = cond.window_s * 1000
            elif series_source(cond.series) == "tick":  # a price window in bars is that many bars long
                self.window_ms = cond.window_bars * bar_seconds * 1000  # type: ignore[operator]
            else:
                self.window_bars = cond.window_bars
        self.kind = "armed" if cond.op in ARMED_OPS else "cross" if cond.op == "crossing" else "level"
        self.also = CompiledCondition(cond.also, bar_seconds) if cond.also is not None else None
        if self.also is not None:
            names |= self.also.series_names
        self.series_names = frozenset(names)
        self.sources = frozenset(series_source(s) for s in names)

    def new_state(self) -> CondState:
        if self.parts:
            return CondState(more=[p.new_state() for p in self.parts])
        return CondState(also=self.also.new_state() if self.also is not None else None)

    def observe(self, values: Mapping[str, float | None], state: CondState, ts_ms: int) -> Observation | None:
        """Observe the latest ``values``; None while a needed series is unknown. Updates ``state``."""
        if self.parts:
            return self._observe_parts(values, state, ts_ms)
        a = _get(values, self.series)
        if a is None:
            return None
        op = self.op
        if op in COMPARE_OPS:
            b = self.const if self.other is None else _get(values, self.other)
            if b is None:
                return None
            side = 1 if a > b else -1 if a < b else state.side
            cross = state.side != 0 and side != state.side
            state.side = side
            if op == "greater_than" or op == "crossing_up":
                active = a > b
            elif op == "less_than" or op == "crossing_down":
                active = a < b
            else:
                active = cross
            obs = Observation(active, cross, side, a, b, a)
        elif op in CHANNEL_OPS:
            lo, hi = self.lower, self.upper
            assert lo is not None and hi is not None
            inside = lo <= a <= hi
            active = inside if op in ("inside_channel", "entering_channel") else not inside
            threshold = hi if a >= (lo + hi) / 2 else lo
            obs = Observation(active, False, 0, a, threshold, a)
        else:
            obs = self._observe_move(a, state, ts_ms)
        if self.also is not None:
            assert state.also is not None
            other = self.also.observe(values, state.also, ts_ms)
            if other is None:
                return None
            obs.active = obs.active and other.active
            obs.cross = obs.cross and other.active
        return obs

    def _observe_parts(self, values: Mapping[str, float | None], state: CondState, ts_ms: int) -> Observation | None:
        """All or any of the parts: every part observes (its memory moves on), then they combine.
        ``all`` is unknown while any part is; ``any`` while every part is. The value reported is
        the first part's (``all``) or the first holding part's (``any``), and ``part`` says which."""
        seen: list[tuple[int, Observation, bool]] = []
        unknown = 0
        for i, (part, st) in enumerate(zip(self.parts, state.more)):
            obs = part.observe(values, st, ts_ms)
            if obs is None:
                unknown += 1
                continue
            seen.append((i, obs, part._holds(obs, st)))
        if not seen or (unknown and not self.any):
            return None
        holding = [(i, obs) for i, obs, holds in seen if holds]
        active = bool(holding) if self.any else len(holding) == len(seen)
        index, first = holding[0] if self.any and holding else seen[0][:2]
        return Observation(active, False, 0, first.value, first.threshold, first.series_value, index)

    def _holds(self, obs: Observation, state: CondState) -> bool:
        """Whether this part counts in a rule of several conditions: a level part while it holds, an
        armed one on the observation where it becomes true, ``crossing`` where it crosses."""
        if self.kind == "level":
            return obs.active
        if self.op in CHANNEL_OPS:  # a channel keeps no side: remember it here (1 active, -1 not)
            prev, state.side = state.side, 1 if obs.active else -1
            return obs.active and prev == -1
        return obs.cross and obs.active

    def _observe_move(self, a: float, state: CondState, ts_ms: int) -> Observation:
        up = self.op in ("moving_up", "moving_up_pct")
        state.n += 1
        key = float(ts_ms) if self.window_ms is not None else float(state.n)
        cutoff = key - (self.window_ms if self.window_ms is not None else self.window_bars)  # type: ignore[operator]
        window = state.window
        # monotonic deque: front holds the window's minimum (moving up) or maximum (moving down)
        if up:
            while window and window[-1][1] >= a:
                window.pop()
        else:
            while window and window[-1][1] <= a:
                window.pop()
        window.append([key, a])
        drop = 0
        while window[drop][0] < cutoff:
            drop += 1
        if drop:
            del window[:drop]
        extreme = window[0][1]
        move = a - extreme if up else extreme - a
        if OPERATORS[self.op].percent:
            move = move / extreme * 100.0 if extreme else 0.0
        assert self.amount is not None
        return Observation(move >= self.amount, False, 0, move, self.amount, a)


def compile_condition(cond: Condition, bar_seconds: int = 60) -> CompiledCondition:
    return CompiledCondition(cond, bar_seconds)


def bar_values(bar: object) -> dict[str, float | None]:
    """The series a Bar updates."""
    return {name: getattr(bar, name) for name in BAR_SERIES}


def prediction_values(pred: object) -> dict[str, float]:
    """The forecast series a Prediction updates (moves in percent of the base close)."""
    base = pred.base_close  # type: ignore[attr-defined]
    return {
        "forecast.close": pred.predicted_close,  # type: ignore[attr-defined]
        "forecast.lower": pred.lower,  # type: ignore[attr-defined]
        "forecast.upper": pred.upper,  # type: ignore[attr-defined]
        "forecast.move_pct": (pred.predicted_close / base - 1.0) * 100.0,  # type: ignore[attr-defined]
        "forecast.lower_move_pct": (pred.lower / base - 1.0) * 100.0,  # type: ignore[attr-defined]
        "forecast.upper_move_pct": (pred.upper / base - 1.0) * 100.0,  # type: ignore[attr-defined]
    }
