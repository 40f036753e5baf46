"""Session references per symbol: the day's open, yesterday's close, the gap, the 20-session range.

Pure Python on top of the one market calendar (:mod:`events.markethours`), no Spark. Each
symbol carries a :class:`SessionState` next to its indicator state; :func:`session_step`
folds one closed bar into it and returns the references the bar carries (docs/indicators.md):

* a bar belongs to the regular session its start lies in (``session_of(start_ms)``); any
  other bar (pre-market, after hours, after a half day's early close, a weekend, a holiday)
  changes nothing and carries the last known references;
* ``session_open``  open of the first bar of the current (latest) regular session;
* ``prev_close``    close of the last bar of the previous regular session the symbol traded
                    (a holiday or a silent day is skipped: Thursday's close on the Monday after
                    Independence Day);
* ``gap_pct``       100 * (session_open - prev_close) / prev_close;
* ``high_20d``/``low_20d``  highest high / lowest low of the previous 20 completed sessions
                    (null until 20 are complete); the current session is not included.

A session is complete when the symbol's first bar of a later session arrives.
"""

from __future__ import annotations

import msgspec

from events.markethours import session_of

__all__ = ["SESSION_FIELDS", "SESSIONS_KEPT", "SessionState", "session_step"]

SESSIONS_KEPT = 20
SESSION_FIELDS = ("session_open", "prev_close", "gap_pct", "high_20d", "low_20d")


class SessionState(msgspec.Struct, array_like=True):
    """One symbol's session references between bars (appended fields must keep defaults)."""

    day: int = -1                   # proleptic ordinal of the current session's New York date; -1: none yet
    open: float | None = None       # first bar's open of the current session
    high: float | None = None       # the current session's high / low / last close so far
    low: float | None = None
    close: float | None = None
    prev_close: float | None = None
    highs: list[float] = []         # highs / lows of the last SESSIONS_KEPT completed sessions, oldest first
    lows: list[float] = []


def _fold(state: SessionState, start_ms: int, o: float, h: float, low: float, c: float) -> None:
    day = session_of(start_ms)
    if day is None:
        return
    ordinal = day.toordinal()
    if ordinal == state.day and state.high is not None and state.low is not None:
        state.high, state.low, state.close = max(state.high, h), min(state.low, low), c
        return
    if state.day >= 0 and state.high is not None and state.low is not None:  # the previous session is complete
        state.highs = (state.highs + [state.high])[-SESSIONS_KEPT:]
        state.lows = (state.lows + [state.low])[-SESSIONS_KEPT:]
        state.prev_close = state.close
    state.day, state.open, state.high, state.low, state.close = ordinal, o, h, low, c


def references(state: SessionState) -> dict[str, float | None]:
    """What a bar carries from ``state`` (after its own fold)."""
    gap = None
    if state.open is not None and state.prev_close is not None and state.prev_close > 0:
        gap = 100.0 * (state.open - state.prev_close) / state.prev_close
    full = len(state.highs) >= SESSIONS_KEPT
    return {
        "session_open": state.open,
        "prev_close": state.prev_close,
        "gap_pct": gap,
        "high_20d": max(state.highs) if full else None,
        "low_20d": min(state.lows) if full else None,
    }


def session_step(state: SessionState, start_ms: int, o: float, h: float, low: float, c: float
                 ) -> dict[str, float | None]:
    """Fold one closed bar (its start and OHLC) into ``state`` (mutated); return its references."""
    _fold(state, start_ms, o, h, low, c)
    return references(state)
