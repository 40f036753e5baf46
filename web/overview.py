"""Pure aggregation of bars for the overview: daily summary, volume, volatility (no I/O)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from statistics import fmean, pstdev
from typing import Iterable, TypedDict

DAY_MS = 86_400_000


@dataclass(frozen=True)
class BarRow:
    symbol: str
    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    sma_20: float | None = None


class DaySummary(TypedDict):
    """One symbol's UTC day in the overview's daily summary."""

    symbol: str
    day: str
    bars: int
    avg_close: float
    last_close: float
    high: float
    low: float
    volume: float
    change_pct: float | None


class SmaDistancePoint(TypedDict):
    """One symbol's UTC day: mean distance of the close from its SMA 20 and the day's volatility (%)."""

    symbol: str
    day: str
    distance_pct: float
    volatility_pct: float


def day_of(ts_ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.timezone.utc).date().isoformat()


def _log_returns(closes: list[float]) -> list[float]:
    return [math.log(b / a) * 100.0 for a, b in zip(closes, closes[1:]) if a > 0 and b > 0]


def _by_symbol_day(rows: Iterable[BarRow]) -> dict[str, dict[str, list[BarRow]]]:
    out: dict[str, dict[str, list[BarRow]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(rows, key=lambda r: (r.symbol, r.start_ms)):
        out[r.symbol][day_of(r.start_ms)].append(r)
    return out


def daily_summary(rows: Iterable[BarRow]) -> list[DaySummary]:
    """Per symbol and UTC day: average and last close, high, low, total volume, % change.

    % change is from the previous day's last close, or from the day's first
    open when the previous day is not in the range.
    """
    out: list[DaySummary] = []
    for symbol, days in _by_symbol_day(rows).items():
        prev_close: float | None = None
        for day in sorted(days):
            bars = days[day]
            last = bars[-1].close
            base = prev_close if prev_close is not None else bars[0].open
            out.append({
                "symbol": symbol, "day": day, "bars": len(bars),
                "avg_close": fmean(b.close for b in bars), "last_close": last,
                "high": max(b.high for b in bars), "low": min(b.low for b in bars),
                "volume": sum(b.volume for b in bars),
                "change_pct": (last / base - 1.0) * 100.0 if base else None,
            })
            prev_close = last
    out.sort(key=lambda d: (d["day"], d["symbol"]), reverse=True)
    return out


def volume_by_symbol(rows: Iterable[BarRow]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for r in rows:
        totals[r.symbol] += r.volume
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def volatility_by_symbol(rows: Iterable[BarRow]) -> dict[str, float | None]:
    """Standard deviation of bar-to-bar log returns, in % (None with fewer than 3 bars)."""
    closes: dict[str, list[float]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r.symbol, r.start_ms)):
        closes[r.symbol].append(r.close)
    out: dict[str, float | None] = {}
    for symbol, cs in closes.items():
        rets = _log_returns(cs)
        out[symbol] = pstdev(rets) if len(rets) >= 2 else None
    return out


def volatility_vs_sma_distance(rows: Iterable[BarRow]) -> list[SmaDistancePoint]:
    """One point per symbol and day: mean distance of the close from its SMA 20 (%) and that day's volatility (%)."""
    points: list[SmaDistancePoint] = []
    for symbol, days in _by_symbol_day(rows).items():
        for day, bars in sorted(days.items()):
            dists = [(b.close / b.sma_20 - 1.0) * 100.0 for b in bars if b.sma_20]
            rets = _log_returns([b.close for b in bars])
            if dists and len(rets) >= 2:
                points.append({"symbol": symbol, "day": day, "distance_pct": fmean(dists), "volatility_pct": pstdev(rets)})
    return points
