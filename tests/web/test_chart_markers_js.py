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


def alert(series: str, op: str, value: float, ts_ms: int, state: str = "firing",
          evidence: dict[str, float] | None = None) -> dict[str, Any]:
    return {"series": series, "op": op, "value": value, "threshold": None, "ts_ms": ts_ms, "state": state,
            "rule_id": 1, "rule_name": "r", **({"evidence": evidence} if evidence is not None else {})}


def test_markers_sit_at_the_price_the_evidence_says_the_alert_fired_at() -> None:
    """A tick-updated series (price, day change) at the tick's price, a bar series (RSI, a bar's change)
    at its bar's close, a price level at its value; the evidence wins over the candles."""
    fired = [alert("price", "moving_up_pct", 0.17, 61_000, evidence={"price": 101.7, "close": 100.5}),
             alert("day_change_pct", "less_than", -5.2, 190_000, evidence={"price": 102.9, "close": 102.5}),
             alert("rsi_14", "less_than", 28.0, 120_000, evidence={"price": 102.2, "close": 101.5}),
             alert("change_pct", "greater_than", 1.1, 180_000, evidence={"close": 102.5}),
             alert("price", "crossing_up", 103.2, 200_000, evidence={"price": 103.2, "close": 102.5})]
    got = markers(fired + [alert("open_change", "greater_than", 3.0, 61_000, "preview",
                                 evidence={"price": 100.8, "close": 100.5})], BARS)
    assert got["Alert fired"] == [101.7, 102.9, 101.5, 102.5, 103.2]
    assert got["Would have fired"] == [100.8]


def test_without_evidence_a_marker_sits_at_the_close_of_the_bar_it_fired_in() -> None:
    """Alerts stored before the evidence was kept: a tick's alert inside its bar, a bar's alert (its time
    is the bar's end, the next bar's start) at the bar that closed, not the next one."""
    fired = [alert("price", "moving_up_pct", 0.17, 60_000), alert("rsi_14", "less_than", 28.0, 120_000),
             alert("day_change_pct", "less_than", -5.2, 180_000), alert("price", "crossing_up", 103.2, 200_000),
             alert("sma_50", "crossing_up", 102.0, 240_000), alert("macd", "crossing_up", 0.4, 240_000),
             alert("price", "moving_up", 2.0, 240_000)]
    got = markers(fired + [alert("open_change", "greater_than", 3.0, 60_000, "preview")], BARS)
    assert got["Alert fired"] == [101.5, 101.5, 103.5, 103.2, 102.0, 103.5, 104.5]
    assert got["Would have fired"] == [101.5]
    low, high = min(b["low"] for b in BARS), max(b["high"] for b in BARS)
    assert all(low <= y <= high for y in got["Alert fired"] + got["Would have fired"])


def test_the_history_and_the_live_alert_carry_the_evidence() -> None:
    """What the chart reads: the projection keeps the alert's evidence, the history API and the bridge
    pass it on (an alert stored before it was kept passes none)."""
    from events import models
    from events.contract import Alert
    from web.bridge import alert_payload
    from web.projector import alert_row
    from web.store.history import alert_json

    a = Alert(id="a1", ts=1_795_000_000_000, rule_id=1, rule_version=1, user_id=1, state="firing", symbol="AAPL",
              trigger_event_id="t", series="rsi_14", op="less_than", value=28.0, threshold=30.0,
              evidence={"price": 101.2, "close": 101.0, "rsi_14": 28.0})
    row = alert_row(a)
    assert row["evidence"] == a.evidence
    assert alert_json(models.AlertRecord(**row))["evidence"] == a.evidence
    assert alert_payload(a)["evidence"] == a.evidence
    old = alert_row(Alert(id="a0", ts=a.ts, rule_id=1, rule_version=1, user_id=1, state="firing", symbol="AAPL",
                          trigger_event_id="t", series="price", op="greater_than"))
    assert old["evidence"] is None and alert_json(models.AlertRecord(**old))["evidence"] == {}


def test_the_vocabulary_names_the_price_levels() -> None:
    levels = set(UNITS_FOR_PAGES["price_levels"])
    assert {"price", "close", "sma_200", "high_20d", "prev_close", "forecast.close"} <= levels
    assert not levels & {"macd", "day_change", "open_change", "rsi_14", "change_pct", "gap_pct"}
    assert set(UNITS_FOR_PAGES["tick_series"]) == {"price", "day_change_pct", "day_change", "open_change_pct",
                                                   "open_change"}


def test_the_email_chart_marks_the_same_price_as_the_web_chart() -> None:
    """``alerts.senders.marker_price`` (the PNG in the email, Slack and push messages) and the web's
    ``TB.fmt.markerPrice`` agree on every case above, with and without the evidence."""
    from alerts.chart_image import Candle
    from alerts.senders import marker_price
    from events.contract import Alert

    cases = [alert("price", "moving_up_pct", 0.17, 61_000, evidence={"price": 101.7, "close": 100.5}),
             alert("rsi_14", "less_than", 28.0, 120_000, evidence={"price": 102.2, "close": 101.5}),
             alert("change_pct", "greater_than", 1.1, 180_000, evidence={"close": 102.5}),
             alert("day_change_pct", "less_than", -5.2, 190_000, evidence={"price": 102.9}),
             alert("price", "moving_up_pct", 0.17, 60_000), alert("rsi_14", "less_than", 28.0, 120_000),
             alert("day_change_pct", "less_than", -5.2, 180_000), alert("price", "crossing_up", 103.2, 200_000),
             alert("sma_50", "crossing_up", 102.0, 240_000), alert("macd", "crossing_up", 0.4, 240_000),
             alert("price", "moving_up", 2.0, 240_000), alert("open_change", "greater_than", 3.0, 60_000)]
    web = markers(cases, BARS)["Alert fired"]
    candles = [Candle(b["start_ms"], b["open"], b["high"], b["low"], b["close"]) for b in BARS]
    mail = [marker_price(Alert(id="a", ts=a["ts_ms"], rule_id=1, rule_version=1, user_id=1, state="firing",
                               symbol="AAPL", trigger_event_id="t", series=a["series"], op=a["op"], value=a["value"],
                               evidence=a.get("evidence", {})), candles) for a in cases]
    assert mail == web, (mail, web)
    assert len(set(web)) > 4   # the cases differ: agreement is not a constant
