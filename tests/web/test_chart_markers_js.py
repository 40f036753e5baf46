"""Where the symbol chart puts an alert's marker (web/static/chart.js with app.js's vocabulary, in
node): a price-level alert at its value, any other (a % move, an RSI, a day change) at the price
where it fired, so that the marker of a percent rule lies within the candles' price range."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from web.store.conditions import UNITS_FOR_PAGES

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
NODE = shutil.which("node")  # installed by the set-up (scripts/setup.sh): a missing one fails, not skips


def markers(alerts: list[dict[str, Any]], bars: list[dict[str, Any]]) -> dict[str, list[Any]]:
    script = (
        "global.window = global; global.TB = require(%s); TB.fmt.useVocabulary(%s);"
        "require(%s);"
        "const out = {}; for (const t of TBChart.traces({symbol: 'AAPL', bars: %s, predictions: [], alerts: %s,"
        " preview: %s})) if (t.mode === 'markers') out[t.name] = t.y;"
        "process.stdout.write(JSON.stringify(out));"
    ) % (json.dumps(str(STATIC / "app.js")), json.dumps(UNITS_FOR_PAGES), json.dumps(str(STATIC / "chart.js")),
         json.dumps(bars), json.dumps([a for a in alerts if a["state"] == "firing"]),
         json.dumps([a for a in alerts if a["state"] == "preview"]))
    assert NODE is not None
    out: dict[str, list[Any]] = json.loads(subprocess.run([NODE, "-e", script], capture_output=True, text=True,
                                                          check=True, timeout=30).stdout)
    return out


BARS = [{"start_ms": i * 60_000, "open": 100.0 + i, "high": 101.0 + i, "low": 99.0 + i, "close": 100.5 + i,
         "volume": 10.0} for i in range(5)]


def alert(series: str, op: str, value: float, ts_ms: int, state: str = "firing") -> dict[str, Any]:
    return {"series": series, "op": op, "value": value, "threshold": None, "ts_ms": ts_ms, "state": state,
            "rule_id": 1, "rule_name": "r"}


def test_percent_indicator_and_day_change_markers_sit_at_the_close_price_markers_at_their_value() -> None:
    fired = [alert("price", "moving_up_pct", 0.17, 60_000), alert("rsi_14", "less_than", 28.0, 120_000),
             alert("day_change_pct", "less_than", -5.2, 180_000), alert("price", "crossing_up", 103.2, 200_000),
             alert("sma_50", "crossing_up", 102.0, 240_000), alert("macd", "crossing_up", 0.4, 240_000),
             alert("price", "moving_up", 2.0, 240_000)]
    got = markers(fired + [alert("open_change", "greater_than", 3.0, 60_000, "preview")], BARS)
    assert got["Alert fired"] == [101.5, 102.5, 103.5, 103.2, 102.0, 104.5, 104.5]
    assert got["Would have fired"] == [101.5]
    low, high = min(b["low"] for b in BARS), max(b["high"] for b in BARS)
    assert all(low <= y <= high for y in got["Alert fired"] + got["Would have fired"])


def test_the_vocabulary_names_the_price_levels() -> None:
    levels = set(UNITS_FOR_PAGES["price_levels"])
    assert {"price", "close", "sma_200", "high_20d", "prev_close", "forecast.close"} <= levels
    assert not levels & {"macd", "day_change", "open_change", "rsi_14", "change_pct", "gap_pct"}
