"""Independent, deliberately naive reference implementations for the stream tests.

Written from the textbook definitions with plain loops, ``statistics`` and
pandas ``ewm``, sharing no code with stream/ (so a wrong formula there cannot
make its own test pass).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

import pandas as pd


def ema_reference(closes: list[float], n: int) -> list[float | None]:
    """SMA-seeded EMA: pandas ewm(adjust=False) over [SMA of first n] + the later closes."""
    if len(closes) < n:
        return [None] * len(closes)
    seeded = [sum(closes[:n]) / n] + closes[n:]
    ewm = pd.Series(seeded).ewm(span=n, adjust=False).mean().tolist()
    return [None] * (n - 1) + ewm


def rsi_reference(closes: list[float], n: int = 14) -> list[float | None]:
    out: list[float | None] = [None] * len(closes)
    if len(closes) <= n:
        return out
    moves = [b - a for a, b in zip(closes, closes[1:])]
    avg_gain = sum(max(m, 0.0) for m in moves[:n]) / n
    avg_loss = sum(max(-m, 0.0) for m in moves[:n]) / n

    def rsi(g: float, l: float) -> float | None:
        if g == 0 and l == 0:
            return None
        if l == 0:
            return 100.0
        return 100.0 - 100.0 / (1.0 + g / l)

    out[n] = rsi(avg_gain, avg_loss)
    for i in range(n + 1, len(closes)):
        m = moves[i - 1]
        avg_gain = (avg_gain * (n - 1) + max(m, 0.0)) / n
        avg_loss = (avg_loss * (n - 1) + max(-m, 0.0)) / n
        out[i] = rsi(avg_gain, avg_loss)
    return out


def indicators_reference(closes: list[float], volumes: list[float]) -> list[dict[str, float | None]]:
    ema12, ema26, rsi = ema_reference(closes, 12), ema_reference(closes, 26), rsi_reference(closes)
    rows = []
    for i, c in enumerate(closes):
        n = i + 1
        r: dict[str, float | None] = {}
        r["change_pct"] = None if i == 0 else (c - closes[i - 1]) / closes[i - 1] * 100
        for w in (5, 10, 20):
            r[f"sma_{w}"] = sum(closes[i - w + 1:i + 1]) / w if n >= w else None
        r["ema_12"], r["ema_26"] = ema12[i], ema26[i]
        r["macd"] = None if ema26[i] is None else ema12[i] - ema26[i]  # type: ignore[operator]
        if n >= 21:
            rets = [math.log(closes[j] / closes[j - 1]) for j in range(i - 19, i + 1)]
            r["volatility_20"] = statistics.stdev(rets)
        else:
            r["volatility_20"] = None
        if n >= 20:
            window = closes[i - 19:i + 1]
            sd = statistics.stdev(window)
            r["zscore_20"] = None if sd == 0 else (c - statistics.fmean(window)) / sd
        else:
            r["zscore_20"] = None
        r["rsi_14"] = rsi[i]
        if n >= 21:
            avg = sum(volumes[i - 20:i]) / 20
            r["volume_avg_20"] = avg
            r["volume_ratio"] = None if avg == 0 else volumes[i] / avg
        else:
            r["volume_avg_20"] = r["volume_ratio"] = None
        rows.append(r)
    return rows


def bars_reference(ticks: list[dict[str, Any]], bar_seconds: int) -> dict[str, dict[str, Any]]:
    """Expected Bar fields by bar id, from ticks given in arrival order (dicts: symbol, ts, price, size)."""
    bar_ms = bar_seconds * 1000
    groups: dict[tuple[str, int], list[tuple[int, int, dict[str, Any]]]] = defaultdict(list)
    for arrival, t in enumerate(ticks):
        start = t["ts"] // bar_ms * bar_ms
        groups[(t["symbol"], start)].append((t["ts"], arrival, t))
    by_symbol: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (symbol, start), items in sorted(groups.items()):
        items.sort(key=lambda x: (x[0], x[1]))
        prices = [x[2]["price"] for x in items]
        sizes = [x[2]["size"] for x in items]
        volume = sum(sizes)
        by_symbol[symbol].append({
            "id": f"bar:{symbol}:{bar_seconds}:{start}", "symbol": symbol, "start_ms": start,
            "ts": start + bar_ms, "bar_seconds": bar_seconds,
            "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
            "volume": volume, "count": len(prices),
            "vwap": sum(p * s for p, s in zip(prices, sizes)) / volume if volume else sum(prices) / len(prices),
        })
    out: dict[str, dict[str, Any]] = {}
    for symbol, bars in by_symbol.items():
        ind = indicators_reference([b["close"] for b in bars], [b["volume"] for b in bars])
        for b, r in zip(bars, ind):
            out[b["id"]] = {**b, **r}
    return out
