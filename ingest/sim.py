"""A seeded, realistic multi-symbol tick generator.

Prices follow geometric Brownian motion per symbol (own drift and volatility)
with rare jumps; trade sizes are log-normal round lots shaped by an intraday
U curve (busy at the open and the close). ``time_scale`` speeds market time
relative to the clock (60: one wall second moves prices like one market
minute), so a demo shows movement; 1 is realistic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from events.markethours import session_fraction
from ingest.base import RawTick

MS_PER_TRADING_YEAR = 252 * 6.5 * 3600 * 1000

DEFAULT_SYMBOLS = (
    "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "JNJ",
    "WMT", "XOM", "PG", "MA", "HD", "BAC", "KO", "PEP", "CSCO", "ORCL",
)


def synthetic_symbols(n: int) -> list[str]:
    """``n`` symbols: the default list first, then S0001, S0002, ..."""
    base = list(DEFAULT_SYMBOLS[:n])
    return base + [f"S{i:04d}" for i in range(1, n - len(base) + 1)]


@dataclass
class SymbolState:
    price: float
    drift: float  # annualised
    vol: float  # annualised
    last_ms: int


class SimSource:
    """Generates ticks with event times from ``clock_ms`` (wall clock by default)."""

    name = "sim"
    dedupe = False

    def __init__(self, symbols: list[str] | tuple[str, ...] = DEFAULT_SYMBOLS, seed: int = 7,
                 time_scale: float = 60.0, jump_prob: float = 0.0005,
                 clock_ms: Callable[[], int] | None = None) -> None:
        if not symbols:
            raise ValueError("at least one symbol is required")
        self.symbols = list(symbols)
        self.rng = np.random.default_rng(seed)
        self.time_scale = time_scale
        self.jump_prob = jump_prob
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        now = self.clock_ms()
        self.state = [
            SymbolState(
                price=float(round(self.rng.uniform(20, 500), 2)),
                drift=float(self.rng.normal(0.06, 0.15)),
                vol=float(self.rng.uniform(0.15, 0.6)),
                last_ms=now,
            )
            for _ in self.symbols
        ]
        self._cursor = 0

    def next_batch(self, max_ticks: int) -> list[RawTick]:
        n = max_ticks
        now = self.clock_ms()
        rng = self.rng
        z = rng.standard_normal(n)
        jumps = rng.random(n) < self.jump_prob
        jump_sizes = rng.normal(0.0, 0.02, n)
        base_sizes = np.maximum(1, np.round(rng.lognormal(0.0, 1.0, n) * 100))
        shape = 1.0 + 1.5 * (2.0 * session_fraction(now) - 1.0) ** 2
        out: list[RawTick] = []
        k = len(self.symbols)
        cursor = self._cursor
        for i in range(n):
            j = cursor % k
            cursor += 1
            st = self.state[j]
            dt = max(now - st.last_ms, 1) * self.time_scale / MS_PER_TRADING_YEAR
            step = (st.drift - 0.5 * st.vol * st.vol) * dt + st.vol * math.sqrt(dt) * z[i]
            if jumps[i]:
                step += jump_sizes[i]
            st.price = max(0.01, st.price * math.exp(step))
            st.last_ms = now
            out.append(RawTick(self.symbols[j], now, round(st.price, 4), float(base_sizes[i] * shape // 1)))
        self._cursor = cursor % k
        return out
