"""The alert chart image: a real PNG, the marker drawn, bounded work whatever the input."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib import image

from alerts.chart_image import DPI, HEIGHT_PX, MAX_BARS, WIDTH_PX, Candle, Marker, render_chart

MARK_RGB = np.array([0x25, 0x63, 0xEB]) / 255


def candles(n: int, start: float = 100.0) -> list[Candle]:
    out, price = [], start
    for i in range(n):
        nxt = price * (1 + 0.002 * math.sin(i))
        out.append(Candle(i * 60_000, price, max(price, nxt) + 0.05, min(price, nxt) - 0.05, nxt))
        price = nxt
    return out


def pixels(png: bytes) -> np.ndarray:
    return image.imread(io.BytesIO(png), format="png")[:, :, :3]


def has_colour(px: np.ndarray, rgb: np.ndarray, tol: float = 0.03) -> bool:
    return bool((np.abs(px - rgb).max(axis=2) < tol).any())


def test_a_png_of_the_fixed_size_with_the_marker() -> None:
    bars = candles(60)
    png = render_chart("AAPL", bars, Marker(bars[-1].start_ms + 30_000, bars[-1].close, "up 1.7 %"))
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    px = pixels(png)
    assert px.shape[:2] == (HEIGHT_PX, WIDTH_PX)
    assert has_colour(px, MARK_RGB)


def test_no_marker_no_marker_colour() -> None:
    png = render_chart("AAPL", candles(30))
    assert png is not None
    assert not has_colour(pixels(png), MARK_RGB)


def test_the_marker_lies_within_the_candles_vertical_extent() -> None:
    bars = candles(40)
    png = render_chart("AAPL", bars, Marker(bars[-1].start_ms, bars[-1].close, "x"))
    assert png is not None
    px = pixels(png)
    rows = np.where((np.abs(px - MARK_RGB).max(axis=2) < 0.03).any(axis=1))[0]
    green = np.where((np.abs(px - np.array([0x16, 0xA3, 0x4A]) / 255).max(axis=2) < 0.05).any(axis=1))[0]
    red = np.where((np.abs(px - np.array([0xDC, 0x26, 0x26]) / 255).max(axis=2) < 0.05).any(axis=1))[0]
    candle_rows = np.concatenate([green, red])
    # the close is inside the candles' range, so the marker's centre row is too (not squashed to an edge)
    assert candle_rows.min() <= np.median(rows) <= candle_rows.max()
    # and the candles use most of the height: no far-away value flattened them
    assert candle_rows.max() - candle_rows.min() > HEIGHT_PX * 0.5


def test_a_far_level_line_does_not_flatten_the_candles() -> None:
    bars = candles(40)
    png = render_chart("AAPL", bars, Marker(bars[-1].start_ms, bars[-1].close, "x", level=0.17))
    assert png is not None
    px = pixels(png)
    green = np.where((np.abs(px - np.array([0x16, 0xA3, 0x4A]) / 255).max(axis=2) < 0.05).any(axis=1))[0]
    assert green.max() - green.min() > HEIGHT_PX * 0.4


def test_bounded_input_and_bad_values() -> None:
    many = candles(5_000)
    bad = [Candle(0, float("nan"), 1, 0, 1), Candle(60_000, 1, 0, 2, 1)]  # NaN, low above high
    png = render_chart("AAPL", bad + many)
    assert png is not None and len(png) < 200_000
    assert render_chart("AAPL", []) is None
    assert render_chart("AAPL", bad) is None
    assert MAX_BARS <= 200 and DPI > 0
