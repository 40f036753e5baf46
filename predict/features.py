"""Stationary features, windows and scalers: the pure core shared by training and serving.

Every feature of bar ``t`` is computed from bars ``<= t`` only (trailing
windows), so a window ending at ``t`` never sees the future. Returns are
divided by the trailing volatility, which makes the features (and the
target) free of the bar size: a model trained on daily bars reads minute
bars on the same scale, and its interval widens and narrows with volatility.

Arrays are ``float64``; the time axis is the second-to-last one, so the same
functions work on one series ``(T, 5)`` and on a batch ``(N, T, 5)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# columns of an OHLCV array
OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)

VOL_BARS = 20        # trailing bars of the volatility that scales returns
FAST_VOL_BARS = 5
MOMENTUM_BARS = 5
VOLUME_BARS = 20
MIN_SIGMA = 1e-6     # a flat series has no scale: its windows are not usable

FEATURES: tuple[str, ...] = (
    "ret_z",          # log return / trailing volatility
    "momentum_z",     # sum of the last 5 log returns / (vol * sqrt 5)
    "range_z",        # log(high / low) / volatility
    "body_z",         # log(close / open) / volatility
    "vol_regime",     # log(5-bar vol / 20-bar vol)
    "volume_ratio",   # log((volume + 1) / (20-bar mean volume + 1))
)

# bars before the first complete feature row (returns need one, vol needs 20 of them)
WARMUP_BARS = VOL_BARS


def _window_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Sums of ``n`` consecutive values along axis -1 (from running sums: one pass, any n)."""
    c = np.cumsum(x, axis=-1)
    out = c[..., n - 1:].copy()
    out[..., 1:] -= c[..., :-n]
    return out


def _trailing(x: np.ndarray, n: int, fn: str) -> np.ndarray:
    """``fn`` (mean/std/sum) over the last ``n`` values along axis -1; NaN where the window is
    incomplete or holds a NaN. Population std (ddof 0)."""
    out = np.full(x.shape, np.nan)
    if x.shape[-1] < n:
        return out
    bad = ~np.isfinite(x)
    x0 = np.where(bad, 0.0, x)
    s = _window_sums(x0, n)
    if fn == "sum":
        val = s
    elif fn == "mean":
        val = s / n
    elif fn == "std":
        mean = s / n
        val = np.sqrt(np.maximum(_window_sums(x0 * x0, n) / n - mean * mean, 0.0))
    else:
        raise ValueError(fn)
    out[..., n - 1:] = np.where(_window_sums(bad.astype(np.float64), n) > 0, np.nan, val)
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """``r[t] = log(close[t] / close[t-1])`` along axis -1; ``r[0]`` is NaN."""
    r = np.full(close.shape, np.nan)
    r[..., 1:] = np.diff(np.log(close), axis=-1)
    return r


def compute_features(ohlcv: np.ndarray) -> np.ndarray:
    """Feature rows ``(..., T, F)`` from OHLCV ``(..., T, 5)``; NaN where warm-up is not over."""
    ohlcv = np.asarray(ohlcv, dtype=np.float64)
    o, h, l, c, v = (ohlcv[..., i] for i in range(5))
    r = log_returns(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = _trailing(r, VOL_BARS, "std")
        sigma = np.where(sigma > MIN_SIGMA, sigma, np.nan)
        fast = _trailing(r, FAST_VOL_BARS, "std")
        feats = np.stack([
            r / sigma,
            _trailing(r, MOMENTUM_BARS, "sum") / (sigma * np.sqrt(MOMENTUM_BARS)),
            np.log(h / l) / sigma,
            np.log(c / o) / sigma,
            np.log(np.maximum(fast, MIN_SIGMA) / sigma),
            np.log((v + 1.0) / (_trailing(v, VOLUME_BARS, "mean") + 1.0)),
        ], axis=-1)
    feats[~np.isfinite(feats)] = np.nan
    return feats


def targets(ohlcv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, sigma)`` per bar: ``y[t] = r[t+1] / sigma[t]`` (NaN at the end), ``sigma[t]`` as in the features."""
    r = log_returns(np.asarray(ohlcv, dtype=np.float64)[..., CLOSE])
    sigma = _trailing(r, VOL_BARS, "std")
    sigma = np.where(sigma > MIN_SIGMA, sigma, np.nan)
    nxt = np.full(r.shape, np.nan)
    nxt[..., :-1] = r[..., 1:]
    return nxt / sigma, sigma


def window_ends(feats: np.ndarray, window: int) -> np.ndarray:
    """Indices ``t`` where the window ``feats[t-window+1 : t+1]`` is complete (no NaN)."""
    ok = np.isfinite(feats).all(axis=-1).astype(np.int64)
    if len(ok) < window:
        return np.empty(0, dtype=np.int64)
    full = sliding_window_view(ok, window).sum(axis=-1) == window
    return np.nonzero(full)[0] + window - 1


def make_windows(feats: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Stack ``feats[t-window+1 : t+1]`` for each ``t`` in ``ends``: ``(len(ends), window, F)``."""
    if len(ends) == 0:
        return np.empty((0, window, feats.shape[-1]))
    idx = ends[:, None] + np.arange(-window + 1, 1)[None, :]
    return feats[idx]


def min_history(window: int) -> int:
    """Bars a symbol needs before its first prediction."""
    return WARMUP_BARS + window


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardisation, fitted on training rows only (clipped to +-``clip``)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    clip: float = 8.0

    @classmethod
    def fit(cls, rows: np.ndarray, clip: float = 8.0) -> "Scaler":
        rows = rows.reshape(-1, rows.shape[-1])
        rows = rows[np.isfinite(rows).all(axis=1)]
        if len(rows) < 2:
            raise ValueError("need at least two complete feature rows to fit a scaler")
        std = rows.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(float(m) for m in rows.mean(axis=0)), tuple(float(s) for s in std), clip)

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.std)
        clipped: np.ndarray = np.clip(z, -self.clip, self.clip)
        return clipped

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaler":
        return cls(tuple(d["mean"]), tuple(d["std"]), float(d.get("clip", 8.0)))
