"""A seeded, realistic multi-symbol tick generator.

Prices follow geometric Brownian motion per symbol (own drift and volatility)
with rare jumps; trade sizes are log-normal round lots shaped by an intraday
U curve (busy at the open and the close). ``time_scale`` speeds market time
relative to the clock (60: one wall second moves prices like one market
minute), so a demo shows movement; 1 is realistic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from events.markethours import session_fraction
from ingest.base import RawTick
from ingest.history import symbol_params

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
                 time_scale: float = 60.0, jumps_per_day: float = 0.5,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.time_scale = time_scale
        self.jumps_per_day = jumps_per_day  # per symbol and trading day of market time, whatever the tick rate
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.symbols: list[str] = []
        self.state: list[SymbolState] = []
        self._parked: dict[str, SymbolState] = {}  # dropped symbols, kept to continue if watched again
        self._cursor = 0
        self.follow(frozenset(symbols), order=list(symbols))

    def follow(self, symbols: frozenset[str], order: list[str] | None = None) -> None:
        """Generate exactly ``symbols`` from now on (FollowingSource).

        A symbol new to the set starts from its own seeded character
        (:func:`ingest.history.symbol_params`): the price its simulated history ends at,
        so the live path continues the backfilled one. A symbol dropped and added again
        continues from where it stopped.
        """
        keep = {sym: st for sym, st in zip(self.symbols, self.state)}
        self._parked.update(keep)
        now = self.clock_ms()
        names = [s for s in (order or sorted(symbols)) if s in symbols]
        states = []
        for sym in names:
            st = self._parked.pop(sym, None)
            if st is None:
                params = symbol_params(sym, self.seed)
                st = SymbolState(price=params.price, drift=params.drift, vol=params.vol, last_ms=now)
            states.append(st)
        self.symbols, self.state = names, states
        self._cursor = self._cursor % len(names) if names else 0
        self._drift = np.array([st.drift for st in self.state])
        self._vol = np.array([st.vol for st in self.state])

    def next_batch(self, max_ticks: int) -> list[RawTick]:
        """``max_ticks`` ticks, round-robin over the symbols, stamped with the clock's now.

        Vectorised: each symbol's log-price path through the batch is a
        cumulative sum of its GBM steps (first step spans the time since the
        symbol's previous tick, later ones 1 ms).
        """
        n = max_ticks
        if n <= 0 or not self.symbols:
            return []
        now = self.clock_ms()
        rng = self.rng
        k = len(self.symbols)
        j = (self._cursor + np.arange(n)) % k
        last_ms = np.fromiter((st.last_ms for st in self.state), dtype=np.float64, count=k)
        dt_ms = np.where(np.arange(n) < k, np.maximum(now - last_ms[j], 1.0), 1.0)
        dt = dt_ms * self.time_scale / MS_PER_TRADING_YEAR
        mu = self._drift[j]
        sig = self._vol[j]
        steps = (mu - 0.5 * sig * sig) * dt + sig * np.sqrt(dt) * rng.standard_normal(n)
        jump_p = -np.expm1(-self.jumps_per_day * 252 * dt)  # a Poisson clock in market time, not per tick
        steps += np.where(rng.random(n) < jump_p, rng.normal(0.0, 0.02, n), 0.0)
        order = np.argsort(j, kind="stable")
        sorted_steps = np.cumsum(steps[order])
        js = j[order]
        group_start = np.r_[0, np.flatnonzero(np.diff(js)) + 1]
        offsets = np.repeat(sorted_steps[group_start] - steps[order][group_start], np.diff(np.r_[group_start, n]))
        log_path = np.empty(n)
        log_path[order] = sorted_steps - offsets
        log_p0 = np.log(np.fromiter((st.price for st in self.state), dtype=np.float64, count=k))
        prices = np.exp(log_p0[j] + log_path)
        shape = 1.0 + 1.5 * (2.0 * session_fraction(now) - 1.0) ** 2
        sizes = np.floor(np.maximum(1.0, np.round(rng.lognormal(0.0, 1.0, n) * 100)) * shape)
        last_of = np.full(k, -1)
        last_of[js[np.r_[group_start[1:] - 1, n - 1]]] = order[np.r_[group_start[1:] - 1, n - 1]]
        for sym_idx in np.flatnonzero(last_of >= 0):
            st = self.state[sym_idx]
            st.price = float(prices[last_of[sym_idx]])
            st.last_ms = now
        self._cursor = int((self._cursor + n) % k)
        names = [self.symbols[x] for x in j.tolist()]
        return [RawTick(sym, now, p, v) for sym, p, v in zip(names, np.round(prices, 4).tolist(), sizes.tolist())]
