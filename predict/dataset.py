"""Supervised samples from bar series: one window of features -> the next bar's return.

Pure numpy. A sample's time is the start of its *target* bar; splitting by
that time (train < cutoff <= test) guarantees that no training target, and no
feature row a scaler is fitted on, lies at or after the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

from predict.data import BarSeries
from predict.features import compute_features, make_windows, targets, window_ends


@dataclass(frozen=True)
class Samples:
    x: np.ndarray                 # (N, W, F) raw features, unscaled
    y: np.ndarray                 # (N,) next log return / sigma
    sigma: np.ndarray             # (N,) trailing volatility at the base bar
    base_close: np.ndarray        # (N,) close of the base bar t
    next_close: np.ndarray        # (N,) close of bar t+1 (the truth)
    base_start_ms: np.ndarray     # (N,) start of bar t
    target_start_ms: np.ndarray   # (N,) start of bar t+1
    symbol: np.ndarray            # (N,) str

    def __len__(self) -> int:
        return len(self.y)

    @property
    def actual_return(self) -> np.ndarray:
        returns: np.ndarray = np.log(self.next_close / self.base_close)
        return returns

    def subset(self, mask: np.ndarray) -> "Samples":
        return Samples(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def before(self, cutoff_ms: int) -> "Samples":
        """Samples whose target bar starts before ``cutoff_ms``."""
        return self.subset(self.target_start_ms < cutoff_ms)

    def between(self, start_ms: int, end_ms: int) -> "Samples":
        return self.subset((self.target_start_ms >= start_ms) & (self.target_start_ms < end_ms))

    def for_symbol(self, symbol: str) -> "Samples":
        return self.subset(self.symbol == symbol)


def build_samples(series: Sequence[BarSeries], window: int) -> Samples:
    """Every complete window with a known next bar, symbol by symbol, in time order."""
    parts: list[dict[str, np.ndarray]] = []
    for s in series:
        feats = compute_features(s.ohlcv)
        y, sigma = targets(s.ohlcv)
        ends = window_ends(feats, window)
        ends = ends[(ends < len(s) - 1) & np.isfinite(y[ends])]
        parts.append({
            "x": make_windows(feats, ends, window),
            "y": y[ends],
            "sigma": sigma[ends],
            "base_close": s.close[ends],
            "next_close": s.close[ends + 1],
            "base_start_ms": s.start_ms[ends],
            "target_start_ms": s.start_ms[ends + 1],
            "symbol": np.full(len(ends), s.symbol, dtype=object),
        })
    if not parts:
        raise ValueError("no series given")
    return Samples(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def time_quantile(samples: Samples, q: float) -> int:
    """The target time below which a fraction ``q`` of the samples lie (a split point)."""
    return int(np.quantile(samples.target_start_ms, q))
