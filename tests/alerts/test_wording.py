"""Alerts in plain words (alerts/templates.py: summary, condition_text, fmt_value), pure: every
operator group against hand-written sentences, and the engine, email and Slack using them."""

from __future__ import annotations

import msgspec
import pytest

from alerts import messages
from alerts.templates import alert_context, condition_text, fmt_value, summary, window_words
from events.contract import Alert, Condition
from tests.alerts.helpers import T0, bar, rule, tick
from alerts.engine_state import Evaluator


def cond(**kw: object) -> Condition:
    return msgspec.convert(kw, Condition)


@pytest.mark.parametrize("value, series, op, expected", [
    (1.71234, "price", "moving_up_pct", "1.71 %"),       # a percent move is in %, whatever the series
    (0.870928, "close", "moving_down_pct", "0.87 %"),
    (0.870928, "price", "greater_than", "0.8709"),       # a price below 1: four significant digits
    (0.35, "price", "moving_up", "0.35"),                # a move in price units, not padded to 4 places
    (0.0012345, "price", "less_than", "0.001234"),
    (250.0, "price", "crossing_up", "250.00"),
    (1234567.891, "sma_200", "greater_than", "1,234,567.89"),
    (-0.5, "macd", "crossing_down", "-0.50"),
    (12345.6, "volume", "greater_than", "12,346"),       # volumes are whole numbers
    (23456.0, "volume_avg_20", "less_than", "23,456"),
    (3.104, "volume_ratio", "greater_than", "3.10"),     # ratios: 2 decimals
    (-3.215, "zscore_20", "outside_channel", "-3.21"),
    (28.43, "rsi_14", "crossing_down", "28.4"),           # RSI: 1 decimal, a whole level without ".0"
    (30.0, "rsi_14", "less_than", "30"),
    (1.234, "volatility_20", "greater_than", "1.23 %"),
    (-1.5, "forecast.move_pct", "less_than", "-1.50 %"),
    (-2.25, "day_change_pct", "less_than", "-2.25 %"),  # a series named later is worded by its name
    (312.0, "feed", "stale", "312 s"),
    (300.0, "feed", "stale", "5 min"),
    (None, "price", "greater_than", "n/a"),
])
def test_values_are_formatted_for_their_series(value: float | None, series: str, op: str, expected: str) -> None:
    assert fmt_value(value, series, op) == expected


def test_windows_in_words() -> None:
    assert [window_words(seconds=s) for s in (60, 90, 3600, 5400, 86_400, 45)] == \
        ["1 min", "90 s", "1 h", "90 min", "1 d", "45 s"]
    assert window_words(bars=1) == "1 bar" and window_words(bars=5) == "5 bars"


# --- every operator group, in words ------------------------------------------------------------

def test_compare() -> None:
    c = cond(series="price", op="greater_than", value=250)
    assert summary("AAPL", "price", "greater_than", 251.2, 250.0, condition=c) == \
        "AAPL at 251.20, above 250.00 (rule: price above 250)"
    assert summary("AAPL", "close", "less_than", 0.870928, 0.9) == \
        "AAPL close at 0.8709, below 0.90 (rule: close below 0.9)"


def test_crossing() -> None:
    c = cond(series="price", op="crossing_up", value=250)
    assert summary("AAPL", "price", "crossing_up", 250.31, 250.0, condition=c) == \
        "AAPL crossed above 250.00 (rule: price crossing up 250)"
    assert summary("AAPL", "price", "crossing", 249.9, 250.0) == "AAPL crossed below 250.00 (rule: price crossing 250)"
    golden = cond(series="sma_50", op="crossing_up", other="sma_200")
    assert summary("AAPL", "sma_50", "crossing_up", 251.4, 251.3, condition=golden) == \
        "AAPL SMA 50 at 251.40, crossing above SMA 200 at 251.30 (rule: SMA 50 crossing up SMA 200)"


def test_rsi_and_indicator_series() -> None:
    assert summary("AAPL", "rsi_14", "crossing_down", 28.43, 30.0) == \
        "AAPL RSI 14 at 28.4, crossing under 30 (rule: RSI 14 crossing down 30)"
    assert summary("AAPL", "rsi_14", "greater_than", 71.25, 70.0) == "AAPL RSI 14 at 71.2, above 70 (rule: RSI 14 above 70)"
    assert summary("MSFT", "forecast.move_pct", "greater_than", 1.234, 1.0) == \
        "MSFT forecast move at 1.23 %, above 1.00 % (rule: forecast move above 1 %)"


def test_channel() -> None:
    c = cond(series="zscore_20", op="outside_channel", lower=-3, upper=3)
    assert summary("AAPL", "zscore_20", "outside_channel", 3.214, 3.0, condition=c) == \
        "AAPL z-score 20 at 3.21, outside -3.00..3.00 (rule: z-score 20 outside -3..3)"
    entering = cond(series="price", op="entering_channel", lower=240, upper=260)
    assert summary("AAPL", "price", "entering_channel", 259.5, 260.0, condition=entering) == \
        "AAPL at 259.50, entering 240.00..260.00 (rule: price entering 240..260)"
    # an Alert alone carries the nearer bound only: it is called that, not the rule's level
    assert summary("AAPL", "zscore_20", "outside_channel", 3.214, 3.0) == \
        "AAPL z-score 20 at 3.21, outside the channel (nearer bound 3.00)"
    assert condition_text("zscore_20", "outside_channel", 3.0) == "z-score 20 outside the channel"


def test_move() -> None:
    c = cond(series="price", op="moving_down", value=2, window_bars=5)
    assert summary("AAPL", "price", "moving_down", 2.354, 2.0, condition=c) == "AAPL down 2.35 in 5 bars (rule: at least 2)"
    assert condition_text("price", "moving_down", 2.0, c) == "price down at least 2 in 5 bars"


def test_move_pct() -> None:
    c = cond(series="price", op="moving_up_pct", value=0.2, window_s=60)
    assert summary("AAPL", "price", "moving_up_pct", 1.71234, 0.2, condition=c) == \
        "AAPL up 1.71 % in 1 min (rule: at least 0.2 %)"
    assert summary("AAPL", "price", "moving_up_pct", 1.71234, 0.2) == "AAPL up 1.71 % (rule: at least 0.2 %)"
    assert condition_text("price", "moving_up_pct", 0.2) == "price up at least 0.2 %"  # was "price moving up % by 0.2"


def test_volume_ratio_and_volume() -> None:
    assert summary("NVDA", "volume_ratio", "greater_than", 3.104, 3.0) == \
        "NVDA volume ratio at 3.10, above 3.00 (rule: volume ratio above 3)"
    assert summary("NVDA", "volume", "greater_than", 12345.6, 10000.0) == \
        "NVDA volume at 12,346, above 10,000 (rule: volume above 10,000)"


def test_resolved_and_stale_feed() -> None:
    assert summary("AAPL", "price", "greater_than", 249.5, 250.0, state="resolved") == \
        "AAPL resolved: price above 250 no longer holds (now 249.50)"
    c = cond(series="price", op="moving_up_pct", value=0.2, window_s=60)
    assert summary("AAPL", "price", "moving_up_pct", 0.12, 0.2, state="resolved", condition=c) == \
        "AAPL resolved: price up at least 0.2 % in 1 min no longer holds (now up 0.12 %)"
    assert summary("AAPL", "feed", "stale", 312.0, 300.0) == "AAPL: no ticks for 312 s (limit 5 min)"
    assert summary("AAPL", "feed", "stale", 0.0, 300.0, state="resolved") == "AAPL: ticks are flowing again"


# --- where the words are used --------------------------------------------------------------------

def pct_alert(**kw: object) -> Alert:
    base = dict(id="alert:pct", ts=1_795_000_000_000, rule_id=4, rule_version=1, user_id=7, state="firing",
                symbol="AAPL", trigger_event_id="sim:AAPL:3", series="price", op="moving_up_pct", value=1.71234,
                threshold=0.2, rule_name="Apple jumps", message="AAPL up 1.71 % in 1 min (rule: at least 0.2 %)",
                evidence={"price": 152.0})
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_the_engine_writes_the_plain_words_as_the_message() -> None:
    ev = Evaluator(bar_seconds=60)
    ev.upsert_rule(rule({"series": "price", "op": "moving_up_pct", "value": 1, "window_s": 60}))
    out = []
    for i, p in enumerate([100.0, 100.5, 101.71]):
        out += ev.on_tick(tick(p, i, ts_ms=T0 + i * 1000))
    [fired] = out
    assert fired.message == "AAPL up 1.71 % in 1 min (rule: at least 1 %)"
    ev = Evaluator(bar_seconds=60)
    ev.upsert_rule(rule({"series": "rsi_14", "op": "crossing_down", "value": 30}))
    out = ev.on_bar(bar(100.0, 0, rsi_14=31.0)) + ev.on_bar(bar(99.0, 1, rsi_14=28.43))
    assert [a.message for a in out] == ["AAPL RSI 14 at 28.4, crossing under 30 (rule: RSI 14 crossing down 30)"]
    # a template sees the windowed words too
    ev = Evaluator(bar_seconds=60)
    ev.upsert_rule(rule({"series": "price", "op": "moving_up_pct", "value": 1, "window_s": 120},
                        message="Heads up: {{summary}}"))
    out = [a for i, p in enumerate([100.0, 102.0]) for a in ev.on_tick(tick(p, i, ts_ms=T0 + i * 1000))]
    assert out[0].message == "Heads up: AAPL up 2.00 % in 2 min (rule: at least 1 %)"


def test_email_subject_first_line_and_values_in_plain_words() -> None:
    ctx = alert_context(pct_alert(), "http://tb.example")
    msg = messages.build_email(ctx, "TB <a@tb>", "u@x.y")
    assert msg["Subject"] == "[Tickerbell] AAPL up 1.71 % (rule: at least 0.2 %)"
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    text, html = plain.get_content(), rich.get_content()
    assert text.splitlines()[0] == "AAPL up 1.71 % in 1 min (rule: at least 0.2 %)"
    assert "Value:     1.71 %" in text and "Threshold: 0.20 %" in text and "Condition: price up at least 0.2 %" in text
    assert "<td>1.71 %</td>" in html and "0.2 %" in html and "1.712340" not in html and "1.7123" not in text
    custom = messages.build_email(alert_context(pct_alert(message="my words"), ""), "TB <a@tb>", "u@x.y")
    assert custom["Subject"] == "[Tickerbell] AAPL up 1.71 % (rule: at least 0.2 %)"  # the subject says what happened
    body = custom.get_body(("plain",))
    assert body is not None and body.get_content().startswith("my words\n")


def test_slack_and_digest_use_the_same_words() -> None:
    payload = messages.slack_payload(alert_context(pct_alert(message="")))
    assert payload["text"] == "AAPL up 1.71 % (rule: at least 0.2 %)"
    assert payload["blocks"][0]["text"]["text"] == "AAPL up 1.71 % (rule: at least 0.2 %)"
    fields = " ".join(f["text"] for f in payload["blocks"][2]["fields"])
    assert "*Value*\n1.71 %" in fields and "*Threshold*\n0.20 %" in fields
    line = messages.digest_line(alert_context(pct_alert()))
    assert line == "2026-11-18T11:06:40Z  AAPL up 1.71 % (rule: at least 0.2 %)"
    ctx = alert_context(pct_alert())
    assert (ctx["value_text"], ctx["threshold_text"]) == ("1.71 %", "0.20 %")


def test_the_default_webhook_document_carries_the_words() -> None:
    import json

    doc = json.loads(messages.webhook_body(None, alert_context(pct_alert())))
    assert doc["summary"] == "AAPL up 1.71 % (rule: at least 0.2 %)"
    assert doc["condition"] == "price up at least 0.2 %" and doc["value"] == 1.71234  # the raw number stays
