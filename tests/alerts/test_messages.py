"""Templates, message rendering, signatures and the retry policy (pure)."""

from __future__ import annotations

import json
import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook

from alerts import messages
from alerts.retry import SVIX_SCHEDULE_S, NotifyConfig, classify_status, load_notify_config, next_delay_s, parse_retry_after
from alerts.templates import TemplateProblem, alert_context, render, validate_template
from events.contract import Alert

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def alert(**kw: object) -> Alert:
    base = dict(id="alert:abc", ts=1_795_000_000_000, rule_id=3, rule_version=2, user_id=7, state="firing",
                symbol="AAPL", trigger_event_id="sim:AAPL:9", series="price", op="crossing_up", value=151.25,
                threshold=150.0, rule_name="Apple over 150", message="AAPL crossed 150",
                evidence={"price": 151.25, "close": 150.5, "volume": 1200.0})
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_tradingview_placeholders() -> None:
    ctx = alert_context(alert(), "http://tb.example", 60)
    text = render("{{ticker}} {{close}} {{price}} {{value}} {{threshold}} {{interval}} {{time}} {{volume}}", ctx)
    assert text == "AAPL 150.5 151.25 151.25 150.0 60s 2026-11-18T11:06:40Z 1200.0"
    assert ctx["chart_url"] == "http://tb.example/symbols/AAPL"
    assert ctx["condition"] == "price crossing up 150"


def test_templates_are_sandboxed_and_never_lose_the_alert() -> None:
    ctx = alert_context(alert())
    assert render("{{ ''.__class__.__mro__[1].__subclasses__() }}", ctx, "fallback") == "fallback"
    assert render("{{ ticker ", ctx, "fallback") == "fallback"
    assert render("{{ missing }}", ctx, "fallback") == ""
    with pytest.raises(TemplateProblem):
        validate_template("{% for %}")


def test_webhook_body_default_and_user_template() -> None:
    ctx = alert_context(alert())
    doc = json.loads(messages.webhook_body(None, ctx))
    assert doc["symbol"] == "AAPL" and doc["value"] == 151.25 and doc["threshold"] == 150.0 and doc["type"] == "alert.firing"
    custom = messages.webhook_body('{"text": "{{ticker}} at {{close}}", "id": "{{alert_id}}"}', ctx)
    assert json.loads(custom) == {"text": "AAPL at 150.5", "id": "alert:abc"}


def test_signature_verifies_with_the_standard_webhooks_library() -> None:
    body = messages.webhook_body(None, alert_context(alert()))
    ts = int(datetime.now(timezone.utc).timestamp())
    headers = messages.webhook_headers(SECRET, messages.webhook_id("alert:abc", 5), ts, body)
    assert headers["webhook-id"] == "alert:abc.c5"
    assert Webhook(SECRET).verify(body, headers)["alert_id"] == "alert:abc"
    tampered = body.replace(b"151.25", b"999")
    with pytest.raises(Exception):
        Webhook(SECRET).verify(tampered, headers)


def test_slack_block_kit_with_text_fallback() -> None:
    payload = messages.slack_payload(alert_context(alert(), "http://tb.example"))
    assert payload["text"] == "AAPL crossed 150"
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds == ["header", "section", "section", "actions"]
    fields = " ".join(f["text"] for f in payload["blocks"][2]["fields"])
    assert "*Value*\n151.25" in fields and "*Threshold*\n150" in fields
    assert payload["blocks"][3]["elements"][0]["url"] == "http://tb.example/symbols/AAPL"


def test_email_is_multipart_with_text_and_html() -> None:
    msg = messages.build_email(alert_context(alert(message="<b>x</b>"), "http://tb.example"), "TB <a@tb>", "u@x.y")
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "AAPL" in part and "151.25" in part and "150" in part and "http://tb.example/symbols/AAPL" in part
    assert "&lt;b&gt;x&lt;/b&gt;" in html  # user text is escaped in HTML


def test_status_classification() -> None:
    assert classify_status(204).ok
    for code in (500, 502, 503, 429, 408):
        assert classify_status(code).retryable
    for code in (400, 401, 403, 404, 410, 422):
        assert not classify_status(code).retryable and not classify_status(code).ok
    assert classify_status(410).gone and not classify_status(404).gone


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime.now(timezone.utc)
    assert parse_retry_after("120", now.timestamp()) == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=60), usegmt=True), now.timestamp()) == pytest.approx(60, abs=1.5)
    assert parse_retry_after("soon", now.timestamp()) is None
    assert parse_retry_after("9999999", now.timestamp()) == 86_400


def test_svix_schedule_with_jitter_and_retry_after() -> None:
    config = NotifyConfig()
    assert SVIX_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    rng = random.Random(1)
    delays = [next_delay_s(n, config, rng=rng) for n in range(1, 8)]
    for delay, base in zip(delays, SVIX_SCHEDULE_S[1:]):
        assert delay is not None and base * 0.8 <= delay <= base * 1.2
    assert next_delay_s(8, config) is None  # retries exhausted after 8 attempts
    assert next_delay_s(1, config, retry_after_s=90) >= 90  # type: ignore[operator]


def test_notify_config_from_environment() -> None:
    config = load_notify_config({"ALERTS_RETRY_SCHEDULE": "0,0.1,0.2", "ALERTS_SWEEP_INTERVAL_S": "0.5",
                                 "ALERTS_QUEUE": "q1", "ALERTS_RETRY_JITTER": "0"})
    assert config.retry_schedule_s == (0, 0.1, 0.2) and config.sweep_interval_s == 0.5 and config.queue == "q1"
    with pytest.raises(ValueError, match="ALERTS_SWEEP_INTERVAL_S"):
        load_notify_config({"ALERTS_SWEEP_INTERVAL_S": "fast"})


def test_every_mail_gets_a_message_id_on_the_app_s_domain_and_a_delivery_keeps_its_own() -> None:
    from email.message import EmailMessage

    assert messages.mail_domain("https://alerts.example.com:8443/app") == "alerts.example.com"
    notice = messages.dated(EmailMessage(), domain=messages.mail_domain("https://alerts.example.com"))
    assert notice["Message-ID"].endswith("@alerts.example.com>") and notice["Date"]
    other = messages.dated(EmailMessage(), domain="alerts.example.com")
    assert other["Message-ID"] != notice["Message-ID"]  # account mails: a new id each
    delivery = messages.identify(EmailMessage(), "alert:0001.c7", "https://alerts.example.com")
    first = delivery["Message-ID"]
    assert first == "<alert.0001.c7@alerts.example.com>"
    assert messages.dated(delivery, domain="alerts.example.com")["Message-ID"] == first  # a retry keeps it


def test_a_chat_message_starts_with_the_mail_s_first_line_and_has_no_secret() -> None:
    ctx = alert_context(Alert(id="a1", ts=1_795_000_000_000, rule_id=3, rule_version=1, user_id=1, state="firing",
                              symbol="AAPL", trigger_event_id="t", series="price", op="greater_than", value=151.0,
                              threshold=150.0, rule_name="r", message="AAPL crossed 150"), "http://tb.test")
    title, body = messages.plain_message(ctx)
    mail = messages.build_email(ctx, "a@tb.test", "b@tb.test")
    first = mail.get_body(("plain",)).get_content().splitlines()[0]  # type: ignore[union-attr]
    assert body.splitlines()[0] == first == messages.slack_payload(ctx)["text"] == "AAPL crossed 150"
    assert title.startswith("AAPL") and "\n" not in title
