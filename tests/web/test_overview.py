"""Pure overview aggregation over plain bar rows."""

from __future__ import annotations

import math

import pytest

from web.overview import BarRow, daily_summary, volatility_by_symbol, volatility_vs_sma_distance, volume_by_symbol

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def rows() -> list[BarRow]:
    out = []
    for i, close in enumerate([10.0, 11.0, 12.0]):  # day 1
        out.append(BarRow("AAA", T0 + i * 60_000, close - 1, close + 0.5, close - 1.5, close, 100.0, close - 1))
    for i, close in enumerate([13.0, 12.0, 15.0]):  # day 2
        out.append(BarRow("AAA", T0 + DAY + i * 60_000, close, close + 1, close - 1, close, 200.0, close))
    out.append(BarRow("BBB", T0, 5.0, 5.0, 5.0, 5.0, 50.0))
    return out


def test_daily_summary() -> None:
    days = {(d["symbol"], d["day"]): d for d in daily_summary(rows())}
    d1, d2 = days[("AAA", "2026-01-01")], days[("AAA", "2026-01-02")]
    assert (d1["avg_close"], d1["last_close"], d1["high"], d1["low"], d1["volume"]) == (11.0, 12.0, 12.5, 8.5, 300.0)
    assert d1["change_pct"] == pytest.approx((12 / 9 - 1) * 100)  # first day: from its open
    assert d2["change_pct"] == pytest.approx(25.0)  # from the previous day's last close 12 to 15
    assert days[("BBB", "2026-01-01")]["change_pct"] == 0.0
    assert [d["day"] for d in daily_summary(rows())][0] == "2026-01-02"  # newest first


def test_volume_and_volatility() -> None:
    assert volume_by_symbol(rows()) == {"AAA": 900.0, "BBB": 50.0}
    vol = volatility_by_symbol(rows())
    rets = [math.log(b / a) * 100 for a, b in zip([10, 11, 12, 13, 12, 15], [11, 12, 13, 12, 15])]
    mean = sum(rets) / len(rets)
    assert vol["AAA"] == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in rets) / len(rets)))
    assert vol["BBB"] is None  # one bar has no returns


def test_volatility_against_distance_from_sma() -> None:
    points = volatility_vs_sma_distance(rows())
    assert [(p["symbol"], p["day"]) for p in points] == [("AAA", "2026-01-01"), ("AAA", "2026-01-02")]
    assert points[0]["distance_pct"] == pytest.approx(((10 / 9) + (11 / 10) + (12 / 11) - 3) / 3 * 100)
    assert points[1]["distance_pct"] == 0.0 and points[1]["volatility_pct"] > 0
