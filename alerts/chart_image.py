"""A small PNG chart of a symbol's last bars with the alert marked, for emails and chat messages.

Pure: bars and a marker in, PNG bytes out (matplotlib's Agg canvas, no display,
no pyplot global state, so worker threads may render side by side). The work is
bounded whatever the input: at most :data:`MAX_BARS` bars (the latest), a fixed
canvas size, and non-finite values dropped.

The marker sits at the price where the alert fired: the tick's price for a price
rule, the bar's close for any other series (a percent move or an RSI is not a
price and must not be plotted on the price axis).

Rendering costs some 100 ms of CPU, and one alert is drawn for each of its channels
(the email's inline image, an Apprise attachment, a chat message's image): the PNG of
the same bars and marker is kept in a small bounded cache (:func:`render_chart` is
keyed by its inputs, so a bar that changed is drawn anew).

Chat services fetch an image by URL, so the web app serves an alert's chart at a
signed, expiring link (:func:`chart_link`, checked by :func:`check_chart_link`):
``/charts/<alert id>.png?exp=<unix s>&sig=<HMAC>``. The signature (itsdangerous,
the app's ``SECRET_KEY`` with a salt of its own) covers the alert id and the expiry,
so neither can be changed; anyone holding the link may fetch that one picture, and
nothing else. A link is only worth sending when the service can reach the app:
:func:`reachable_from_outside` says no for a loopback or private ``PUBLIC_URL``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import io
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence
from urllib.parse import quote, urlsplit

from itsdangerous import Signer
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["CACHE_SIZE", "CHART_PATH", "LINK_TTL_S", "MAX_BARS", "Candle", "Marker", "chart_cache_info",
           "chart_link", "check_chart_link", "clear_chart_cache", "reachable_from_outside", "render_chart"]

MAX_BARS = 120
CACHE_SIZE = 64                  # PNGs kept (some 10-30 KB each): the alerts of the last minutes
CHART_PATH = "/charts/"          # the web app's route: CHART_PATH + <quoted alert id> + ".png"
LINK_TTL_S = 30 * 24 * 3600      # Slack shows an old message's image from the link: a month
_DAY_S = 86400
_SALT = "tickerbell.chart-image"
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
    """The PNG of the last bars with the marker, or None when there is nothing to draw.

    The same inputs give the same bytes from the cache (thread-safe; two threads drawing the
    same chart at the same moment may both draw it once)."""
    return _render_cached(symbol, tuple(candles[-MAX_BARS:]), marker, bar_seconds)


def chart_cache_info() -> functools._CacheInfo:
    """Hits, misses and size of the PNG cache (for measurements and tests)."""
    return _render_cached.cache_info()


def clear_chart_cache() -> None:
    _render_cached.cache_clear()


@functools.lru_cache(maxsize=CACHE_SIZE)
def _render_cached(symbol: str, candles: tuple[Candle, ...], marker: Marker | None,
                   bar_seconds: int) -> bytes | None:
    bars = [c for c in candles if _finite(c)]
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


# --- the signed link the web app serves the chart at -------------------------------------------


def _signer(secret_key: str) -> Signer:
    return Signer(secret_key, salt=_SALT, digest_method=hashlib.sha256)


def _signed_value(alert_id: str, exp_s: int) -> str:
    return f"{alert_id}|{exp_s}"  # the expiry is digits only: no two (id, expiry) pairs read alike


def chart_link(public_url: str, secret_key: str, alert_id: str, now_s: float, ttl_s: int = LINK_TTL_S) -> str:
    """The absolute URL of ``alert_id``'s chart, valid for at least ``ttl_s`` from ``now_s``.

    The expiry is rounded up to a whole day, so every send of one alert within a day carries
    the same URL (and a service that caches images by URL fetches it once)."""
    exp_s = -(-(int(now_s) + ttl_s) // _DAY_S) * _DAY_S
    sig = _signer(secret_key).get_signature(_signed_value(alert_id, exp_s)).decode("ascii")
    return f"{public_url.rstrip('/')}{CHART_PATH}{quote(alert_id, safe='')}.png?exp={exp_s}&sig={sig}"


def check_chart_link(secret_key: str, alert_id: str, exp: str, sig: str, now_s: float) -> str | None:
    """None when (``exp``, ``sig``) is a valid, unexpired signature of ``alert_id``; else why not.

    The signature is checked first and in constant time; the expiry only counts once it is
    known to be ours."""
    if not exp.isdigit() or len(exp) > 12 or not sig or len(sig) > 100 or not sig.isascii():
        return "bad signature"
    if not _signer(secret_key).verify_signature(_signed_value(alert_id, int(exp)), sig):
        return "bad signature"
    if int(exp) <= now_s:
        return "expired"
    return None


def reachable_from_outside(public_url: str) -> bool:
    """Whether a service on the internet (Slack) could fetch a link under ``public_url``: an http(s)
    URL whose host is not loopback, a private or link-local address, or a ``localhost``, ``.local``,
    ``.internal`` or ``.home.arpa`` name. Other names are taken as public (no DNS lookup here)."""
    parts = urlsplit(public_url)
    host = (parts.hostname or "").strip(".").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".home.arpa")):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return address.is_global
