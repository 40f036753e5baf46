"""A small PNG chart of a symbol's last bars with the alert marked, for emails and chat messages.

Pure: bars and a marker in, PNG bytes out (matplotlib's Agg canvas, no display,
no pyplot global state, so worker threads may render side by side). The work is
bounded whatever the input: at most :data:`MAX_BARS` bars (the latest), a fixed
canvas size, and non-finite values dropped.

The marker sits at the price where the alert fired: the tick's price for a price
rule, the bar's close for any other series (a percent move or an RSI is not a
price and must not be plotted on the price axis).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["MAX_BARS", "Candle", "Marker", "render_chart"]

MAX_BARS = 120
WIDTH_PX, HEIGHT_PX, DPI = 560, 240, 80
UP, DOWN, MARK, LEVEL = "#16a34a", "#dc2626", "#2563eb", "#6b7280"


@dataclass(frozen=True)
class Candle:
    start_ms: int
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True)
class Marker:
    """Where the alert fired: its time, the price to mark, a short label, and an optional level line."""

    ts_ms: int
    price: float
    label: str
    level: float | None = None


def _finite(c: Candle) -> bool:
    return all(math.isfinite(v) for v in (c.open, c.high, c.low, c.close)) and c.low <= c.high


def render_chart(symbol: str, candles: Sequence[Candle], marker: Marker | None = None, *,
                 bar_seconds: int = 60) -> bytes | None:
    """The PNG of the last bars with the marker, or None when there is nothing to draw."""
    bars = [c for c in candles[-MAX_BARS:] if _finite(c)]
    if not bars:
        return None
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.12, 0.86, 0.78))
    xs = list(range(len(bars)))
    colours = [UP if c.close >= c.open else DOWN for c in bars]
    ax.vlines(xs, [c.low for c in bars], [c.high for c in bars], colors=colours, linewidth=1)
    floor = [(c.high - c.low) * 0.02 or 1e-9 for c in bars]  # a flat bar still shows
    ax.bar(xs, [max(abs(c.close - c.open), f) for c, f in zip(bars, floor)], 0.6,
           bottom=[min(c.open, c.close) for c in bars], color=colours, linewidth=0)
    lows = [c.low for c in bars]
    highs = [c.high for c in bars]
    if marker is not None and math.isfinite(marker.price):
        x = _position(bars, marker.ts_ms, bar_seconds)
        ax.scatter([x], [marker.price], s=60, color=MARK, zorder=3, edgecolors="white", linewidths=1)
        ax.annotate(marker.label[:40], (x, marker.price), xytext=(-6, 8), textcoords="offset points",
                    ha="right", fontsize=8, color=MARK)
        lows.append(marker.price)
        highs.append(marker.price)
        if marker.level is not None and math.isfinite(marker.level):
            low, high = min(lows), max(highs)
            span = (high - low) or abs(high) * 0.01 or 1.0
            if low - span <= marker.level <= high + span:  # a far-away level would flatten the candles
                ax.axhline(marker.level, color=LEVEL, linewidth=0.8, linestyle="--")
    low, high = min(lows), max(highs)
    pad = (high - low) * 0.08 or abs(high) * 0.01 or 1.0
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlim(-1, len(bars))
    ax.yaxis.tick_right()
    ax.tick_params(labelsize=8)
    ax.set_xticks([0, len(bars) - 1])
    ax.set_xticklabels([_clock(bars[0].start_ms), _clock(bars[-1].start_ms)])
    for side in ("top", "left"):
        ax.spines[side].set_visible(False)
    fig.text(0.02, 0.93, f"{symbol}  last {len(bars)} bars", fontsize=9)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _position(bars: Sequence[Candle], ts_ms: int, bar_seconds: int) -> float:
    """The x of ``ts_ms`` on the bar axis (clamped to the chart)."""
    first = bars[0].start_ms
    step_ms = bar_seconds * 1000
    for i, c in enumerate(bars):
        if c.start_ms <= ts_ms < c.start_ms + step_ms:
            return i + (ts_ms - c.start_ms) / step_ms - 0.5
    return float(len(bars) - 1) if ts_ms >= first else 0.0


def _clock(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%H:%M UTC")
