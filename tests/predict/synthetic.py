"""Synthetic bar series with known structure (pure numpy, seeded)."""

from __future__ import annotations

import numpy as np

from predict.data import BarSeries

START_MS = 1_700_000_000_000


def series_from_returns(symbol: str, returns: np.ndarray, *, seed: int, bar_seconds: int = 60,
                        start_ms: int = START_MS, price0: float = 100.0) -> BarSeries:
    """Bars whose close follows ``returns``; open = previous close, a small wick, random volume."""
    rng = np.random.default_rng(seed)
    close = price0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[price0], close[:-1]])
    wick = np.abs(rng.normal(0, np.std(returns) * 0.3 + 1e-6, (2, len(close))))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = rng.lognormal(8, 0.3, len(close))
    ohlcv = np.column_stack([open_, high, low, close, volume])
    starts = start_ms + np.arange(len(close), dtype=np.int64) * bar_seconds * 1000
    return BarSeries(symbol, bar_seconds, starts, ohlcv)


def ar1_returns(n: int, phi: float, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eps = rng.normal(0, sigma, n)
    r = np.empty(n)
    r[0] = eps[0]
    for t in range(1, n):
        r[t] = phi * r[t - 1] + eps[t]
    return r


def ar1_series(symbol: str, n: int = 1500, phi: float = 0.6, sigma: float = 0.002, seed: int = 1) -> BarSeries:
    """Log returns from an AR(1): the best possible skill against persistence is phi**2."""
    return series_from_returns(symbol, ar1_returns(n, phi, sigma, seed), seed=seed + 100)


def random_walk_series(symbol: str, n: int = 1500, sigma: float = 0.002, seed: int = 2) -> BarSeries:
    """Independent returns: nothing to predict, the honest skill is zero."""
    rng = np.random.default_rng(seed)
    return series_from_returns(symbol, rng.normal(0, sigma, n), seed=seed + 100)
