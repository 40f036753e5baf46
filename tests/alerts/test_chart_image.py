"""The alert chart image: a real PNG, the marker drawn, bounded work whatever the input; one rendering
per alert for all its channels; the signed link it is served at; the Apprise attachment, through the guard."""

from __future__ import annotations

import base64
import io
import json
import math
import time
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
from matplotlib import image

from alerts.apprise_channel import send_apprise
from alerts.chart_image import (CACHE_SIZE, CHART_PATH, DPI, HEIGHT_PX, LINK_TTL_S, MAX_BARS, WIDTH_PX, Candle,
                                Marker, chart_cache_info, chart_link, check_chart_link, clear_chart_cache,
                                reachable_from_outside, render_chart)
from tests.alerts.conftest import Receiver

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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


# --- one rendering per alert ------------------------------------------------------------------


def test_the_same_bars_and_marker_render_once_and_a_changed_bar_anew() -> None:
    clear_chart_cache()
    bars = candles(60)
    mark = Marker(bars[-1].start_ms, bars[-1].close, "up 1.71 %")
    started = time.perf_counter()
    first = render_chart("AAPL", bars, mark)          # the email
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    second = render_chart("AAPL", list(bars), mark)   # the Slack image of the same alert
    warm_s = time.perf_counter() - started
    assert first is not None and first is second
    info = chart_cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert warm_s < cold_s / 10
    moved = bars[:-1] + [Candle(bars[-1].start_ms, bars[-1].open, bars[-1].high + 1, bars[-1].low, bars[-1].close)]
    third = render_chart("AAPL", moved, mark)          # the last bar changed since: drawn again
    assert third is not None and third != first and chart_cache_info().misses == 2


def test_the_cache_is_bounded() -> None:
    clear_chart_cache()
    for i in range(CACHE_SIZE + 5):
        render_chart("AAPL", candles(3, start=100.0 + i))
    assert chart_cache_info().currsize == CACHE_SIZE


# --- the signed link --------------------------------------------------------------------------

KEY = "a-secret-key-for-tests"
NOW_S = 1_795_000_000.0


def link_parts(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path.startswith(CHART_PATH) and parts.path.endswith(".png")
    return unquote(parts.path[len(CHART_PATH):-4]), query["exp"][0], query["sig"][0]


def test_a_link_is_valid_for_its_alert_until_it_expires() -> None:
    url = chart_link("https://tickerbell.example/", KEY, "alert:firing:1:0001", NOW_S)
    assert url.startswith("https://tickerbell.example/charts/alert%3Afiring%3A1%3A0001.png?exp=")
    alert_id, exp, sig = link_parts(url)
    assert alert_id == "alert:firing:1:0001"
    assert NOW_S + LINK_TTL_S <= int(exp) < NOW_S + LINK_TTL_S + 86400
    assert check_chart_link(KEY, alert_id, exp, sig, NOW_S) is None
    assert check_chart_link(KEY, alert_id, exp, sig, int(exp) - 1) is None
    assert check_chart_link(KEY, alert_id, exp, sig, int(exp)) == "expired"
    # every send of the alert within the day carries the same link
    assert chart_link("https://tickerbell.example", KEY, alert_id, NOW_S + 60) == url


def test_a_changed_signature_id_expiry_or_key_is_refused() -> None:
    alert_id, exp, sig = link_parts(chart_link("https://t.example", KEY, "alert:firing:1:0001", NOW_S))
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert check_chart_link(KEY, alert_id, exp, flipped, NOW_S) == "bad signature"
    assert check_chart_link(KEY, "alert:firing:1:0002", exp, sig, NOW_S) == "bad signature"
    assert check_chart_link(KEY, alert_id, str(int(exp) + 86400), sig, NOW_S) == "bad signature"
    assert check_chart_link("another-key", alert_id, exp, sig, NOW_S) == "bad signature"
    for bad_exp, bad_sig in (("", sig), ("-1", sig), ("1e9", sig), (exp, ""), (exp, "x" * 500), (exp, "é" * 10)):
        assert check_chart_link(KEY, alert_id, bad_exp, bad_sig, NOW_S) == "bad signature"
    # an expired link whose signature is forged says "bad signature", not "expired"
    assert check_chart_link(KEY, alert_id, "1000", sig, NOW_S) == "bad signature"


@pytest.mark.parametrize("url, reachable", [
    ("https://tickerbell.example", True), ("https://tickerbell.herokuapp.com/", True), ("http://203.0.113.7", False),
    ("http://8.8.8.8:8000", True), ("http://127.0.0.1:5000", False), ("http://localhost:5000", False),
    ("http://LOCALHOST.", False), ("http://app.localhost", False), ("http://[::1]:5000", False),
    ("http://10.1.2.3", False), ("http://192.168.1.5", False), ("http://169.254.169.254", False),
    ("http://box.local", False), ("http://web.internal:8000", False), ("http://nas.home.arpa", False), ("", False), ("ftp://tickerbell.example", False), ("tickerbell.example", False),
])
def test_only_a_public_url_is_reachable_from_outside(url: str, reachable: bool) -> None:
    assert reachable_from_outside(url) is reachable


# --- the Apprise attachment, through the address guard ------------------------------------------


def test_a_signal_api_message_carries_the_chart_png(receiver: Receiver) -> None:
    png = render_chart("AAPL", candles(30))
    assert png is not None
    url = f"signal://127.0.0.1:{receiver.port}/+15551230000/+15551239999"
    outcome = send_apprise(url, "AAPL up 1.71 %", "rule: at least 0.2 %", allow_private=True, timeout_s=5,
                           image_png=png)
    assert outcome.ok, outcome.error
    [got] = receiver.got("/v2/send")
    sent = json.loads(got.body)
    assert "AAPL" in sent["message"]
    [attached] = sent["base64_attachments"]
    data = base64.b64decode(attached.split("base64,")[-1])
    assert data == png and data[:8] == PNG_SIGNATURE


def test_the_attachment_changes_nothing_about_the_guard(receiver: Receiver) -> None:
    png = render_chart("AAPL", candles(30))
    url = f"signal://127.0.0.1:{receiver.port}/+15551230000/+15551239999"
    outcome = send_apprise(url, "t", "b", allow_private=False, timeout_s=5, image_png=png)
    assert not outcome.ok and not outcome.retryable and "loopback" in (outcome.error or "")
    assert receiver.got() == []


def test_ntfy_gets_the_text_without_the_image(receiver: Receiver) -> None:
    png = render_chart("AAPL", candles(30))
    outcome = send_apprise(f"ntfy://127.0.0.1:{receiver.port}/tb", "AAPL up", "b", allow_private=True, timeout_s=5,
                           image_png=png)
    assert outcome.ok, outcome.error
    [got] = receiver.got()
    assert json.loads(got.body)["title"] == "AAPL up"  # the JSON message, not a file upload
    assert PNG_SIGNATURE not in got.body
