"""History for a newly watched symbol: closed bars as ``HistoryBar`` events.

Two offline-capable producers and one for real quotes, each a pure function of its inputs:

* :func:`simulated_history` — a seeded path per symbol (the same per-symbol drift and
  volatility the simulator's live path uses, :func:`symbol_params`), so a simulated live
  path can continue from the last history close and look like one series;
* :func:`frame_to_history` — a yfinance ``history()`` frame (or the bundled daily data),
  resampled to the serving bar size.

The ingest loop publishes a symbol's history (and flushes) before its first live tick;
the stream job folds it with the same state function as live bars (``stream.bars``).
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, NamedTuple

import numpy as np

from events.contract import HistoryBar
from events.contract_ids import history_bar_id
from ingest.yahoo import frame_to_bars

__all__ = ["SymbolParams", "frame_to_history", "history_window", "simulated_history", "symbol_params", "yahoo_history"]

MS_PER_TRADING_YEAR = 252 * 6.5 * 3600 * 1000
#: sub-steps simulated inside one history bar (open, high, low and close come from them)
_STEPS_PER_BAR = 12
_MAX_TRADES_PER_BAR = 5_000
#: the simulator's intraday U curve, 1 + 1.5 (2f - 1)^2 over the session, averages 1.5
_INTRADAY_SHAPE_MEAN = 1.5


class SymbolParams(NamedTuple):
    price: float  # starting price when nothing else is known
    drift: float  # annualised
    vol: float  # annualised


def _rng(seed: int, symbol: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(symbol.encode()), stream])


def symbol_params(symbol: str, seed: int = 7) -> SymbolParams:
    """A symbol's own simulated character: the same for a symbol whatever else is watched."""
    rng = _rng(seed, symbol, 0)
    return SymbolParams(price=float(round(rng.uniform(20, 500), 2)), drift=float(rng.normal(0.06, 0.15)),
                        vol=float(rng.uniform(0.15, 0.6)))


def history_window(end_ms: int, bar_seconds: int, n_bars: int) -> tuple[int, int]:
    """(first start, last start) of the ``n_bars`` closed bars before ``end_ms``, aligned to the bar size."""
    bar_ms = bar_seconds * 1000
    last_start = end_ms // bar_ms * bar_ms - bar_ms
    return last_start - (n_bars - 1) * bar_ms, last_start


def simulated_history(symbol: str, *, bar_seconds: int, end_ms: int, n_bars: int, seed: int = 7,
                      time_scale: float = 60.0, source: str = "sim-history",
                      trades_per_bar: float | None = None) -> list[HistoryBar]:
    """``n_bars`` closed bars ending before ``end_ms`` (seeded by symbol and ``seed``), oldest first.

    Market time runs ``time_scale`` times the clock, as in :class:`ingest.sim.SimSource`, so one
    history bar moves like a live bar of the same length. The path ends at the symbol's
    starting price (:func:`symbol_params`) walked backwards: the same symbol always gets the
    same history for the same window. A bar's volume is the sum of ``trades_per_bar`` trades of
    the simulator's log-normal round-lot sizes (default: one per sub-step), so a backfill made
    for a live path of a given rate has that path's volume per bar.
    """
    if n_bars <= 0:
        return []
    params = symbol_params(symbol, seed)
    first_start, _ = history_window(end_ms, bar_seconds, n_bars)
    bar_ms = bar_seconds * 1000
    rng = _rng(seed, symbol, first_start // bar_ms)
    dt = bar_ms * time_scale / MS_PER_TRADING_YEAR / _STEPS_PER_BAR
    mu, sig = params.drift, params.vol
    steps = (mu - 0.5 * sig * sig) * dt + sig * np.sqrt(dt) * rng.standard_normal(n_bars * _STEPS_PER_BAR)
    log_path = np.cumsum(steps)
    log_path -= log_path[-1]  # the last close is the symbol's own price
    prices = params.price * np.exp(log_path).reshape(n_bars, _STEPS_PER_BAR)
    opens = np.r_[prices[0, 0], prices[:-1, -1]]
    closes = prices[:, -1]
    highs = np.maximum(prices.max(axis=1), opens)
    lows = np.minimum(prices.min(axis=1), opens)
    trades = int(min(max(round(trades_per_bar or _STEPS_PER_BAR), 1), _MAX_TRADES_PER_BAR))
    sizes = np.maximum(1.0, np.round(rng.lognormal(0.0, 1.0, (n_bars, trades)) * 100))
    volumes = np.floor(sizes.sum(axis=1) * _INTRADAY_SHAPE_MEAN)
    out = []
    for i in range(n_bars):
        start = first_start + i * bar_ms
        o, h, low, c = (round(float(x), 4) for x in (opens[i], highs[i], lows[i], closes[i]))
        out.append(HistoryBar(
            id=history_bar_id(symbol, bar_seconds, start), ts=start + bar_ms, symbol=symbol, start_ms=start,
            bar_seconds=bar_seconds, open=o, high=max(h, o, c), low=min(low, o, c), close=c,
            volume=float(volumes[i]), source=source,
        ))
    return out


def frame_to_history(frame: Any, symbol: str, *, bar_seconds: int, source: str,
                     before_ms: int | None = None) -> list[HistoryBar]:
    """HistoryBars from an OHLCV frame indexed by bar start (yfinance's ``history()`` shape).

    Rows are grouped into bars of ``bar_seconds`` aligned to the epoch (first open, max high,
    min low, last close, summed volume); rows must be no longer than one bar. Bars that start
    at or after ``before_ms`` (the forming one) are left out, and rows with a missing or
    non-positive price are skipped.
    """
    bar_ms = bar_seconds * 1000
    bars: dict[int, list[float]] = {}
    for start, o, h, low, c, v in frame_to_bars(frame):
        v = v if v == v else 0.0  # NaN volume (indices): none traded
        if min(o, h, low, c) <= 0:
            continue
        bucket = start // bar_ms * bar_ms
        got = bars.get(bucket)
        if got is None:
            bars[bucket] = [o, h, low, c, max(v, 0.0)]
        else:
            got[1], got[2], got[3], got[4] = max(got[1], h), min(got[2], low), c, got[4] + max(v, 0.0)
    out = []
    for start in sorted(bars):
        if before_ms is not None and start + bar_ms > before_ms:
            continue
        o, h, low, c, v = bars[start]
        h, low = max(h, o, c), min(low, o, c)
        out.append(HistoryBar(id=history_bar_id(symbol, bar_seconds, start), ts=start + bar_ms, symbol=symbol,
                              start_ms=start, bar_seconds=bar_seconds, open=o, high=h, low=low, close=c,
                              volume=v, source=source))
    return out


Fetch = Callable[[str, str, str], Any]  # (symbol, period, interval) -> yfinance history frame


def yfinance_history_fetch(symbol: str, period: str, interval: str, timeout_s: float = 10.0) -> Any:
    import yfinance as yf

    return yf.Ticker(symbol).history(period=period, interval=interval, timeout=timeout_s, raise_errors=True)


def yahoo_request(bar_seconds: int) -> tuple[str, str]:
    """(period, interval) of the Yahoo history request that can be resampled to ``bar_seconds``.

    Yahoo serves 1-minute bars for the last 7 days and daily bars for years; a bar size that
    is neither a whole number of minutes within a day nor a whole number of days cannot be
    built from them.
    """
    if bar_seconds % 86_400 == 0:
        return "5y", "1d"
    if bar_seconds % 60 == 0 and bar_seconds < 86_400:
        return "5d", "1m"
    raise ValueError(f"Yahoo history has 1-minute and daily bars; BAR_SECONDS={bar_seconds} cannot be built from them")


def yahoo_history(symbol: str, *, bar_seconds: int, end_ms: int, n_bars: int,
                  fetch: Fetch = yfinance_history_fetch) -> list[HistoryBar]:
    """The last ``n_bars`` closed bars of ``symbol`` before ``end_ms`` from Yahoo (raises on failure)."""
    period, interval = yahoo_request(bar_seconds)
    bars = frame_to_history(fetch(symbol, period, interval), symbol, bar_seconds=bar_seconds,
                            source="yfinance-history", before_ms=end_ms)
    return bars[-n_bars:] if n_bars > 0 else []
