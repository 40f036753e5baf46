"""Bar indicators: the one place that says what an SMA, EMA, RSI... is in Tickerbell.

Pure numpy, no Spark, no Kafka. Two entry points that give bit-identical
results because they share every formula (same window matrices reduced by
the same numpy calls, same scalar recurrences):

* :func:`compute` — batch, vectorised over one symbol's whole close/volume
  history (what backfills, notebooks and tests use);
* :func:`step` — incremental, vectorised over many symbols at once: each
  symbol carries a small :class:`IndicatorState` (last 200 closes, last 21
  volumes, the EMA and Wilder averages) from bar to bar, which is what the
  Spark job keeps in its state store.

Conventions (also in docs/indicators.md). ``n`` counts the bars seen so far,
including the current one; a value is ``None`` (NaN here) until its warm-up
is complete, never a partial or guessed value.

* ``change_pct``     100 * (close - prev_close) / prev_close; from bar 2.
* ``sma_N``          arithmetic mean of the last N closes incl. the current; from bar N
                     (N = 5, 10, 20, 50, 200).
* ``ema_N``          alpha = 2/(N+1); the first value (bar N) is the SMA of the first
                     N closes, then ema += alpha * (close - ema) (TA-Lib's EMA;
                     N = 12, 26, 50, 200). A state decoded from a checkpoint written
                     before ema_50/ema_200 existed (26 closes kept, no EMA carried)
                     seeds them with the SMA of the last N closes once it has kept N.
* ``macd``           ema_12 - ema_26 (both as above); from bar 26. TA-Lib's MACD
                     function re-seeds its fast EMA at bar 26, so its first values
                     differ slightly; the difference decays geometrically.
* ``volatility_20``  sample standard deviation (ddof=1) of the last 20 log returns
                     ln(close_t / close_t-1), per bar, not annualised; from bar 21.
* ``zscore_20``      (close - sma_20) / std_20, std_20 the SAMPLE standard deviation
                     (ddof=1, pandas' ``rolling(20).std()``) of the last 20 closes;
                     from bar 20; None when std_20 == 0 (flat prices).
* ``rsi_14``         Wilder's RSI as TA-Lib computes it: the first average gain/loss
                     is the simple mean of the first 14 up/down moves (bar 15), then
                     avg = (avg * 13 + move) / 14; rsi = 100 * avg_gain /
                     (avg_gain + avg_loss); None while both averages are 0
                     (no movement at all; TA-Lib would say 0).
* ``volume_avg_20``  mean volume of the 20 bars BEFORE the current one (the current
                     bar is excluded, so a spike does not dilute its own baseline);
                     from bar 21.
* ``volume_ratio``   volume / volume_avg_20; None when volume_avg_20 == 0.

Bars are counted, not clock intervals: a symbol with no ticks in an interval
has no bar there, and every "previous"/"last N" means previous emitted bars.
"""

from __future__ import annotations

from typing import Sequence, cast

import msgspec
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["BAR_FIELDS", "FIELDS", "IndicatorState", "LONG_FIELDS", "compute", "step", "to_optional"]

CLOSES_KEPT = 200  # sma_200 and the EMA-200 seed need the last 200 closes
VOLUMES_KEPT = 21  # 20 previous volumes + the current one
RSI_N = 14

FIELDS = (  # the short windows (tests/stream/reference.py's textbook loops cover exactly these)
    "change_pct", "sma_5", "sma_10", "sma_20", "ema_12", "ema_26", "macd",
    "volatility_20", "zscore_20", "rsi_14", "volume_avg_20", "volume_ratio",
)
LONG_FIELDS = ("sma_50", "sma_200", "ema_50", "ema_200")  # the 50/200-bar windows
BAR_FIELDS = FIELDS + LONG_FIELDS  # every indicator compute/step return and a Bar carries

F64 = np.ndarray


class IndicatorState(msgspec.Struct, array_like=True):
    """What one symbol carries from one closed bar to the next (compact: array_like JSON)."""

    n: int = 0                          # bars seen
    closes: list[float] = []            # last CLOSES_KEPT closes, oldest first
    volumes: list[float] = []           # last VOLUMES_KEPT volumes, oldest first
    ema_12: float | None = None
    ema_26: float | None = None
    avg_gain: float | None = None
    avg_loss: float | None = None
    # appended last, with defaults, so an older checkpoint (7 elements) still decodes
    ema_50: float | None = None
    ema_200: float | None = None


# --- shared formulas ------------------------------------------------------------------
# Every window statistic goes through these, on C-contiguous (rows, N) matrices, so a
# window gives the same bits whether it is one row of a batch or one symbol of a step.

def _row_mean(windows: F64) -> F64:
    return cast(F64, np.ascontiguousarray(windows, dtype=np.float64).mean(axis=1))


def _row_std1(windows: F64) -> F64:
    return cast(F64, np.ascontiguousarray(windows, dtype=np.float64).std(axis=1, ddof=1))


def _ema_next(prev: F64, close: F64, alpha: float) -> F64:
    return cast(F64, prev + alpha * (close - prev))


def _wilder_next(prev: F64, move: F64) -> F64:
    return cast(F64, (prev * (RSI_N - 1) + move) / RSI_N)


def _rsi(avg_gain: F64, avg_loss: F64) -> F64:
    total = avg_gain + avg_loss
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 100.0 * avg_gain / total, np.nan)


def _ratio(num: F64, den: F64) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _zscore(close: F64, sma: F64, std: F64) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, (close - sma) / std, np.nan)


def _change_pct(close: F64, prev: F64) -> F64:
    return cast(F64, 100.0 * (close - prev) / prev)


def _alpha(n: int) -> float:
    return 2.0 / (n + 1)


# --- batch -----------------------------------------------------------------------------

def _rolling(values: F64, n: int, fn) -> F64:  # type: ignore[no-untyped-def]
    out = np.full(values.shape[0], np.nan)
    if values.shape[0] >= n:
        out[n - 1:] = fn(sliding_window_view(values, n))
    return out


def _ema_series(close: F64, n: int) -> F64:
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] < n:
        return out
    alpha = _alpha(n)
    ema = _row_mean(close[None, :n])
    out[n - 1] = ema[0]
    for i in range(n, close.shape[0]):
        ema = _ema_next(ema, close[i:i + 1], alpha)
        out[i] = ema[0]
    return out


def _rsi_series(close: F64) -> F64:
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] <= RSI_N:
        return out
    moves = np.diff(close)
    gains, losses = np.maximum(moves, 0.0), np.maximum(-moves, 0.0)
    avg_gain, avg_loss = _row_mean(gains[None, :RSI_N]), _row_mean(losses[None, :RSI_N])
    out[RSI_N] = _rsi(avg_gain, avg_loss)[0]
    for i in range(RSI_N + 1, close.shape[0]):
        avg_gain = _wilder_next(avg_gain, gains[i - 1:i])
        avg_loss = _wilder_next(avg_loss, losses[i - 1:i])
        out[i] = _rsi(avg_gain, avg_loss)[0]
    return out


def compute(close: Sequence[float] | F64, volume: Sequence[float] | F64) -> dict[str, F64]:
    """Every indicator for every bar of one symbol's history (NaN during warm-up).

    ``close`` and ``volume`` are the bars' closes and volumes, oldest first.
    Returns one float64 array per name in :data:`BAR_FIELDS`, aligned with the input.
    """
    c = np.asarray(close, dtype=np.float64)
    v = np.asarray(volume, dtype=np.float64)
    if c.shape != v.shape or c.ndim != 1:
        raise ValueError("close and volume must be 1-D and of equal length")
    m = c.shape[0]
    prev = np.concatenate(([np.nan], c[:-1])) if m else c
    sma_20 = _rolling(c, 20, _row_mean)
    std_20 = _rolling(c, 20, _row_std1)
    log_ret = np.concatenate(([np.nan], np.log(c[1:] / c[:-1]))) if m else c
    ema_12, ema_26 = _ema_series(c, 12), _ema_series(c, 26)
    ema_50, ema_200 = _ema_series(c, 50), _ema_series(c, 200)
    vol_avg = np.full(m, np.nan)
    if m > 20:
        vol_avg[20:] = _row_mean(sliding_window_view(v[:-1], 20))
    vol_20 = np.full(m, np.nan)
    if m > 20:
        vol_20[20:] = _row_std1(sliding_window_view(log_ret[1:], 20))
    return {
        "change_pct": _change_pct(c, prev),
        "sma_5": _rolling(c, 5, _row_mean),
        "sma_10": _rolling(c, 10, _row_mean),
        "sma_20": sma_20,
        "ema_12": ema_12,
        "ema_26": ema_26,
        "macd": ema_12 - ema_26,
        "volatility_20": vol_20,
        "zscore_20": _zscore(c, sma_20, std_20),
        "rsi_14": _rsi_series(c),
        "volume_avg_20": vol_avg,
        "volume_ratio": _ratio(v, vol_avg),
        "sma_50": _rolling(c, 50, _row_mean),
        "sma_200": _rolling(c, 200, _row_mean),
        "ema_50": ema_50,
        "ema_200": ema_200,
    }


# --- incremental -------------------------------------------------------------------------

def _right_aligned(rows: list[list[float]], width: int) -> F64:
    """A (len(rows), width) matrix, each row's values at its right end, NaN-padded on the left."""
    mat = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        if row:
            mat[i, width - len(row):] = row
    return mat


def _opt(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def step(states: Sequence[IndicatorState], close: Sequence[float], volume: Sequence[float]
         ) -> tuple[list[IndicatorState], dict[str, F64]]:
    """Fold one new bar into each symbol's state; vectorised across symbols.

    ``states[i]`` is symbol i's state before its new bar (``close[i]``,
    ``volume[i]``). Returns the new states and, per name in :data:`BAR_FIELDS`, an
    array of the new bar's values (NaN during warm-up), bit-identical to the
    last row :func:`compute` would give on the symbol's whole history.
    """
    k = len(states)
    c_new = np.asarray(close, dtype=np.float64).reshape(k)
    v_new = np.asarray(volume, dtype=np.float64).reshape(k)
    n = np.array([s.n for s in states], dtype=np.int64) + 1
    closes = _right_aligned([s.closes[-(CLOSES_KEPT - 1):] + [float(c)] for s, c in zip(states, c_new)],
                            CLOSES_KEPT)
    volumes = _right_aligned([s.volumes[-(VOLUMES_KEPT - 1):] + [float(v)] for s, v in zip(states, v_new)],
                             VOLUMES_KEPT)

    def sma(w: int) -> F64:
        return _row_mean(closes[:, -w:])  # NaN wherever the window is not yet full

    prev = closes[:, -2]
    sma_20 = sma(20)
    std_20 = _row_std1(closes[:, -20:])
    log_ret = np.log(closes[:, -20:] / closes[:, -21:-1])
    vol_avg = _row_mean(volumes[:, :-1])

    def ema(w: int, carried: list[float | None]) -> F64:
        prev_ema = np.array([np.nan if e is None else e for e in carried])
        seeded = _row_mean(closes[:, -w:])  # NaN until w closes are kept
        # Seed where nothing is carried yet (bar w of a fresh state, or the first full
        # window of a state from an older checkpoint), else the recurrence.
        return np.where(np.isnan(prev_ema), seeded, _ema_next(prev_ema, c_new, _alpha(w)))

    ema_12 = ema(12, [s.ema_12 for s in states])
    ema_26 = ema(26, [s.ema_26 for s in states])
    ema_50 = ema(50, [s.ema_50 for s in states])
    ema_200 = ema(200, [s.ema_200 for s in states])

    moves = np.diff(closes[:, -(RSI_N + 1):], axis=1)
    gains, losses = np.maximum(moves, 0.0), np.maximum(-moves, 0.0)
    last_gain, last_loss = gains[:, -1], losses[:, -1]
    prev_gain = np.array([np.nan if s.avg_gain is None else s.avg_gain for s in states])
    prev_loss = np.array([np.nan if s.avg_loss is None else s.avg_loss for s in states])
    seed = n == RSI_N + 1
    avg_gain = np.where(seed, _row_mean(gains), np.where(n > RSI_N + 1, _wilder_next(prev_gain, last_gain), np.nan))
    avg_loss = np.where(seed, _row_mean(losses), np.where(n > RSI_N + 1, _wilder_next(prev_loss, last_loss), np.nan))

    values = {
        "change_pct": _change_pct(c_new, prev),
        "sma_5": sma(5),
        "sma_10": sma(10),
        "sma_20": sma_20,
        "ema_12": ema_12,
        "ema_26": ema_26,
        "macd": ema_12 - ema_26,
        "volatility_20": _row_std1(log_ret),
        "zscore_20": _zscore(c_new, sma_20, std_20),
        "rsi_14": _rsi(avg_gain, avg_loss),
        "volume_avg_20": vol_avg,
        "volume_ratio": _ratio(v_new, vol_avg),
        "sma_50": sma(50),
        "sma_200": sma(200),
        "ema_50": ema_50,
        "ema_200": ema_200,
    }
    new_states = [
        IndicatorState(
            n=int(n[i]),
            closes=(s.closes + [float(c_new[i])])[-CLOSES_KEPT:],
            volumes=(s.volumes + [float(v_new[i])])[-VOLUMES_KEPT:],
            ema_12=_opt(ema_12[i]), ema_26=_opt(ema_26[i]),
            avg_gain=_opt(avg_gain[i]), avg_loss=_opt(avg_loss[i]),
            ema_50=_opt(ema_50[i]), ema_200=_opt(ema_200[i]),
        )
        for i, s in enumerate(states)
    ]
    return new_states, values


def to_optional(values: dict[str, F64], i: int) -> dict[str, float | None]:
    """Row ``i`` of :func:`step`/:func:`compute` output as plain floats, NaN as None."""
    return {name: _opt(values[name][i]) for name in BAR_FIELDS}
