"""Alerts of rules of several conditions (pure: the engine's core, the wording, the messages).

An alert of ``any`` names the condition that matched (series, operator, value and threshold all
its own, so the value is formatted in its unit); one of ``all`` lists every condition with its
value. Every message built from the alert alone (email, Apprise text, webhook, Slack) lists the
conditions with "all of" / "any of", after the alert went through the contract's encoding.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from alerts import messages
from alerts.engine_state import Evaluator
from alerts.templates import alert_context, fmt_value
from events.contract import Alert, decode, encode
from tests.alerts.helpers import T0, bar, rule, tick

ABOVE_200_OR_DOWN_5 = {"series": "price", "op": "greater_than", "value": 200.0, "match": "any",
                       "more": [{"series": "day_change_pct", "op": "less_than", "value": -5.0},
                                {"series": "rsi_14", "op": "less_than", "value": 30.0}]}
ABOVE_200_AND_RSI_UNDER_30 = {"series": "price", "op": "greater_than", "value": 200.0,
                              "more": [{"series": "rsi_14", "op": "less_than", "value": 30.0}]}


def evaluator(condition: dict[str, Any], **fields: Any) -> Evaluator:
    ev = Evaluator(bar_seconds=60)
    ev.upsert_rule(rule(condition, channel_ids=[3], **fields))
    return ev


def wire(alert: Alert) -> Alert:
    """The alert as the dispatcher and the worker see it: through the contract's JSON (the topic), then
    the delivery row's JSON payload (``msgspec.to_builtins``, read back with ``convert``)."""
    seen = decode(encode(alert), Alert)
    return msgspec.convert(json.loads(json.dumps(msgspec.to_builtins(seen))), Alert)


def test_an_any_alert_names_the_condition_that_matched_in_its_unit() -> None:
    ev = evaluator(ABOVE_200_OR_DOWN_5)
    assert ev.on_bar(bar(155.0, 0, prev_close=155.0, rsi_14=50.0)) == []
    assert ev.on_tick(tick(150.0, 1)) == []  # down 3.2 %: none holds
    (fired,) = ev.on_tick(tick(140.0, 2))  # down 9.68 % from the previous close
    assert (fired.series, fired.op, fired.threshold) == ("day_change_pct", "less_than", -5.0)
    assert fired.value is not None and round(fired.value, 2) == -9.68
    assert fmt_value(fired.value, fired.series, fired.op) == "-9.68 %"  # a percent, not a price of 0.87
    assert fired.message == ("AAPL day change at -9.68 %, below -5.00 % (rule: any of: price above 200; "
                             "day change below -5 %; RSI 14 below 30)")
    assert fired.condition is not None and len(fired.condition.parts()) == 3
    (resolved,) = ev.on_tick(tick(150.0, 3))
    assert resolved.state == "resolved" and resolved.message.startswith("AAPL resolved: none of: price above 200")
    assert (resolved.series, resolved.op) == ("price", "greater_than") and resolved.value == 150.0


def test_an_any_alert_on_a_bar_names_the_indicator() -> None:
    ev = evaluator(ABOVE_200_OR_DOWN_5)
    ev.on_tick(tick(150.0, 0))
    (fired,) = ev.on_bar(bar(150.0, 1, prev_close=151.0, rsi_14=28.44))
    assert (fired.series, fired.op, fired.value, fired.threshold) == ("rsi_14", "less_than", 28.44, 30.0)
    assert fired.message.startswith("AAPL RSI 14 at 28.4, below 30 (rule: any of: ")


def test_an_all_alert_lists_every_condition_with_its_value() -> None:
    ev = evaluator(ABOVE_200_AND_RSI_UNDER_30)
    ev.on_bar(bar(201.0, 0, rsi_14=25.0))
    (fired,) = ev.on_tick(tick(201.5, 1))
    assert (fired.series, fired.value, fired.threshold) == ("price", 201.5, 200.0)  # the first's, and ...
    assert fired.message == "AAPL: all of: price above 200 (now 201.50); RSI 14 below 30 (now 25)"  # ... all listed
    (resolved,) = ev.on_tick(tick(199.0, 2))
    assert resolved.message == ("AAPL resolved: not all of: price above 200 (now 199.00); RSI 14 below 30 (now 25) "
                                "hold any more")


def test_a_reminder_of_any_names_the_condition_that_still_holds() -> None:
    ev = evaluator(ABOVE_200_OR_DOWN_5, repeat_interval_s=60)
    ev.on_bar(bar(155.0, 0, prev_close=155.0, rsi_14=50.0))
    out = [a for i, p in enumerate([140.0, 141.0, 139.0], 1)
           for a in ev.on_tick(tick(p, i, ts_ms=T0 + i * 40_000))]
    assert [(a.repeat, a.series) for a in out] == [(0, "day_change_pct"), (1, "day_change_pct")]
    assert out[1].value is not None and round(out[1].value, 2) == round((139 / 155 - 1) * 100, 2)


def test_a_reminder_of_a_percent_move_reports_the_move_not_the_price() -> None:
    ev = evaluator({"series": "price", "op": "moving_up_pct", "value": 1.0, "window_s": 300}, repeat_interval_s=60)
    out = [a for i, p in enumerate([100.0, 102.0, 102.5, 103.0], 0)
           for a in ev.on_tick(tick(p, i, ts_ms=T0 + i * 40_000))]
    assert [(a.repeat, round(a.value or 0, 2)) for a in out] == [(0, 2.0), (1, 3.0)]
    assert fmt_value(out[1].value, out[1].series, out[1].op) == "3.00 %"


def test_an_old_alert_without_the_conditions_still_decodes() -> None:
    old = {"type": "alert", "id": "a", "ts": T0, "rule_id": 1, "rule_version": 1, "user_id": 7, "state": "firing",
           "symbol": "AAPL", "trigger_event_id": "t", "series": "price", "op": "greater_than", "value": 201.0,
           "threshold": 200.0}
    alert = decode(json.dumps(old).encode(), Alert)
    assert alert.condition is None
    ctx = alert_context(alert)
    assert ctx["condition"] == "price above 200" and ctx["conditions"] == ["price above 200"]
    assert wire(alert) == alert


def _fired_any() -> Alert:
    ev = evaluator(ABOVE_200_OR_DOWN_5)
    ev.on_bar(bar(155.0, 0, prev_close=155.0, rsi_14=50.0))
    (fired,) = ev.on_tick(tick(140.0, 1))
    return wire(fired)


def test_the_email_lists_every_condition_and_the_one_that_matched() -> None:
    ctx = alert_context(_fired_any(), "http://tb.example")
    msg = messages.build_email(ctx, "TB <a@tb>", "u@x.y")
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert ("Condition: any of\n           - price above 200\n           - day change below -5 %\n"
            "           - RSI 14 below 30\nMatched:   day change below -5 %\nValue:     -9.68 %\n"
            "Threshold: -5.00 %\n") in text
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<td>- RSI 14 below 30</td>" in html and "<th align='left'>Matched</th><td>day change below -5 %</td>" in html
    assert str(msg["Subject"]).startswith("[Tickerbell] AAPL day change at -9.68 %, below -5.00 % (rule: any of:")


def test_the_chat_webhook_and_slack_texts_list_every_condition() -> None:
    ctx = alert_context(_fired_any(), "http://tb.example")
    title, body = messages.plain_message(ctx)  # Apprise: Telegram, Discord, ntfy ...
    assert "Condition: any of" in body and "- day change below -5 %" in body and "Matched:   day change" in body
    doc = json.loads(messages.webhook_body(None, ctx))
    assert doc["condition"] == "any of: price above 200; day change below -5 %; RSI 14 below 30"
    assert doc["conditions"] == ["price above 200", "day change below -5 %", "RSI 14 below 30"]
    assert (doc["match"], doc["matched"], doc["series"]) == ("any", "day change below -5 %", "day_change_pct")
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1]
              for f in messages.slack_payload(ctx)["blocks"][2]["fields"]}
    assert fields["*Condition*"] == doc["condition"] and fields["*Value*"] == "-9.68 %"


def test_an_all_alert_through_the_wire_keeps_its_words() -> None:
    ev = evaluator(ABOVE_200_AND_RSI_UNDER_30)
    ev.on_bar(bar(201.0, 0, rsi_14=25.0))
    (fired,) = ev.on_tick(tick(201.5, 1))
    ctx = alert_context(wire(fired))
    assert ctx["summary"] == fired.message  # the worker says what the engine said
    assert ctx["condition"] == "all of: price above 200; RSI 14 below 30" and ctx["matched"] == ""
    assert "Condition: all of\n           - price above 200\n           - RSI 14 below 30\nValue:" in \
        "\n".join(messages.detail_lines(ctx))
