"""The Apprise and Slack-bot channel kinds and the email's chart, through the delivery path
(:func:`alerts.notify.deliver`) against a real database, SMTP server, HTTP receiver and fake Slack on loopback."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from sqlalchemy.orm import Session, sessionmaker

from alerts import messages, notify
from alerts.dispatch import record_deliveries
from alerts.templates import alert_context
from events import models
from events.contract import Alert
from events.settings import Settings
from tests.alerts.conftest import Receiver, SmtpServer
from tests.alerts.test_notify import FAST, delivery, make_channel, make_user, sessions, settings  # noqa: F401
from tests.alerts.test_slack_bot import TOKEN, FakeSlack, slack  # noqa: F401 (fixture)

TS_MS = 1_795_000_000_000
BAR_MS = 60_000


def alert(user_id: int, channel_ids: list[int], state: str = "firing", n: int = 1, rule_id: int = 1,
          symbol: str = "AAPL") -> Alert:
    return Alert(id=f"alert:{state}:{rule_id}:{n:04d}", ts=TS_MS + n * BAR_MS, rule_id=rule_id, rule_version=1,
                 user_id=user_id, state=state, symbol=symbol, trigger_event_id=f"sim:{symbol}:{n}",  # type: ignore[arg-type]
                 series="change_pct", op="greater_than", value=1.71, threshold=0.2, channel_ids=channel_ids,
                 rule_name="move", evidence={"price": 151.0, "close": 151.0, "change_pct": 1.71})


def fire(sessions: sessionmaker[Session], a: Alert) -> int:  # noqa: F811
    """The delivery row of ``a`` on its one channel, as the dispatcher writes it. Which resolved alerts get
    rows is the dispatcher's choice (not yet made there): a resolve's row is written here the same way."""
    with sessions() as s:
        if a.state == "firing":
            [did] = record_deliveries(s, [a])
            return did
        d = models.Delivery(alert_id=a.id, channel_id=a.channel_ids[0], user_id=a.user_id, status="pending",
                            payload=msgspec.to_builtins(a))
        s.add(d)
        s.commit()
        return d.id


# --- Apprise: ntfy pointed at the local receiver ------------------------------------------------


def test_an_ntfy_channel_receives_the_alert_when_private_targets_are_allowed(sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    user = make_user(sessions)
    url = f"ntfy://reader:s3cr3t-tok@127.0.0.1:{receiver.port}/tb-alerts"
    ch = make_channel(sessions, user, "apprise", url)
    did = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    assert notify.deliver(sessions, did, settings, FAST).status == "skipped"  # a redelivered task sends nothing
    [req] = receiver.got()
    doc = json.loads(req.body)
    assert doc["topic"] == "tb-alerts"
    assert doc["title"].startswith("AAPL") and "1.71" in doc["title"]
    assert "Condition:" in doc["message"]
    d = delivery(sessions, did)
    assert [a.status_code for a in d.attempt_log] == [200]
    assert "s3cr3t-tok" not in caplog.text  # the URL's token is never logged


def test_the_same_ntfy_url_is_refused_without_the_override(sessions: sessionmaker[Session], settings: Settings,  # noqa: F811
                                                           receiver: Receiver,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    strict = replace(settings, allow_private_webhooks=False)
    user = make_user(sessions)
    ch = make_channel(sessions, user, "apprise", f"ntfy://reader:s3cr3t-tok@127.0.0.1:{receiver.port}/tb-alerts")
    did = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, did, strict, FAST).status == "failed"  # refused: no retry
    assert receiver.got() == []
    d = delivery(sessions, did)
    assert d.last_error and "127.0.0.1" in d.last_error and "s3cr3t-tok" not in d.last_error
    assert "s3cr3t-tok" not in caplog.text


def test_an_ntfy_server_error_follows_the_retry_schedule(sessions: sessionmaker[Session], settings: Settings,  # noqa: F811
                                                         receiver: Receiver) -> None:
    receiver.script["/"] = [(503, {})]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "apprise", f"ntfy://127.0.0.1:{receiver.port}/t")
    did = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, did, settings, FAST).status == "retry"
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    assert [a.status_code for a in delivery(sessions, did).attempt_log] == [503, 200]


# --- Slack with a bot token: the resolve edits the message it posted ------------------------------


def test_a_resolve_updates_the_slack_message_the_firing_posted(sessions: sessionmaker[Session], settings: Settings,  # noqa: F811
                                                               slack: FakeSlack) -> None:  # noqa: F811
    bot = replace(settings, slack_api_url=slack.base)
    user = make_user(sessions)
    ch = make_channel(sessions, user, "slack_bot", "#alerts", secret=TOKEN)
    fired = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, fired, bot, FAST).status == "delivered"
    [(where, ts)] = list(slack.messages)
    assert delivery(sessions, fired).external_ref == f"{where}:{ts}"
    assert slack.calls[0][0] == "chat.postMessage" and slack.calls[0][1]["channel"] == "#alerts"
    first_text = slack.messages[(where, ts)]["text"]

    other = fire(sessions, alert(user, [ch], rule_id=2, n=2))  # another rule: a message of its own
    assert notify.deliver(sessions, other, bot, FAST).status == "delivered"
    assert len(slack.messages) == 2

    resolved = fire(sessions, alert(user, [ch], state="resolved", n=3))
    assert notify.deliver(sessions, resolved, bot, FAST).status == "delivered"
    assert slack.calls[-1][0] == "chat.update"
    assert (slack.calls[-1][1]["channel"], slack.calls[-1][1]["ts"]) == (where, ts)
    assert len(slack.messages) == 2  # edited in place, nothing posted
    assert slack.messages[(where, ts)]["text"] != first_text
    assert delivery(sessions, resolved).external_ref == f"{where}:{ts}"


def test_a_resolve_without_an_original_message_is_posted(sessions: sessionmaker[Session], settings: Settings,  # noqa: F811
                                                         slack: FakeSlack) -> None:  # noqa: F811
    bot = replace(settings, slack_api_url=slack.base)
    user = make_user(sessions)
    ch = make_channel(sessions, user, "slack_bot", "#alerts", secret=TOKEN)
    resolved = fire(sessions, alert(user, [ch], state="resolved", n=3))
    assert notify.deliver(sessions, resolved, bot, FAST).status == "delivered"
    assert [c[0] for c in slack.calls] == ["chat.postMessage"]


def test_a_revoked_bot_token_fails_for_good(sessions: sessionmaker[Session], settings: Settings, slack: FakeSlack) -> None:  # noqa: F811
    bot = replace(settings, slack_api_url=slack.base)
    user = make_user(sessions)
    ch = make_channel(sessions, user, "slack_bot", "#alerts", secret="xoxb-revoked-0000000000")
    did = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, did, bot, FAST).status == "failed"
    with sessions() as s:
        channel = s.get(models.Channel, ch)
        assert channel is not None and not channel.enabled  # invalid_auth: the token is gone


# --- the email people read --------------------------------------------------------------------


def add_bars(sessions: sessionmaker[Session], symbol: str, n: int, bar_seconds: int = 60) -> None:  # noqa: F811
    with sessions() as s:
        for i in range(n):
            close = 150.0 + (i % 7) * 0.1
            s.add(models.BarRecord(symbol=symbol, bar_seconds=bar_seconds, start_ms=TS_MS - (n - 1 - i) * BAR_MS,
                                   open=close - 0.05, high=close + 0.2, low=close - 0.2, close=close, volume=100.0,
                                   count=3, vwap=close))
        s.commit()


def test_the_email_has_date_message_id_and_the_chart_inline(sessions: sessionmaker[Session], settings: Settings,  # noqa: F811
                                                            smtp_server: SmtpServer) -> None:
    add_bars(sessions, "AAPL", 80)
    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "trader@example.com")
    did = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    [mail] = smtp_server.messages
    assert mail["Date"] and mail["Date"].datetime is not None
    assert mail["Message-ID"] == f"<alert.firing.1.0001.c{ch}@tb.test>"
    assert mail.get_content_type() == "multipart/alternative"
    text, related = mail.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.iter_parts()
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    png = image.get_content()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    cid = image["Content-ID"].strip("<>")
    assert f"cid:{cid}" in html_part.get_content()
    # the first line of the mail is the first line of a Slack message of the same alert
    ctx = alert_context(alert(user, [ch]), settings.public_url, settings.bar_seconds)
    assert text.get_content().splitlines()[0] == messages.slack_payload(ctx)["text"].splitlines()[0]


def test_without_bars_the_email_goes_without_a_picture(sessions: sessionmaker[Session], settings: Settings,  # noqa: F811
                                                       smtp_server: SmtpServer) -> None:
    add_bars(sessions, "MSFT", 10)  # another symbol's bars are not this alert's
    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "trader@example.com")
    did = fire(sessions, alert(user, [ch]))
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    [mail] = smtp_server.messages
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail["Date"] and mail["Message-ID"]


def test_the_sent_email_has_date_message_id_both_parts_and_a_plain_subject(
        sessions: sessionmaker[Session], settings: Settings, smtp_server: SmtpServer) -> None:  # noqa: F811
    from email.utils import parsedate_to_datetime

    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "trader@example.com")
    pct = Alert(id="alert:pct1", ts=1_795_000_000_000, rule_id=2, rule_version=1, user_id=user, state="firing",
                  symbol="AAPL", trigger_event_id="sim:AAPL:7", series="price", op="moving_up_pct", value=1.71234,
                  threshold=0.2, channel_ids=[ch], rule_name="jump",
                  message="AAPL up 1.71 % in 1 min (rule: at least 0.2 %)", evidence={"price": 152.0})
    with sessions() as s:
        [did] = record_deliveries(s, [pct])
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    after = datetime.now(timezone.utc)
    [mail] = smtp_server.messages  # parsed by Python's email parser from what the SMTP server received
    sent_at = parsedate_to_datetime(mail["Date"])
    assert sent_at.utcoffset() == timedelta(0) and before <= sent_at <= after
    assert mail["Message-ID"] == f"<alert.pct1.c{ch}@tb.test>"
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert mail["Subject"] == "[Tickerbell] AAPL up 1.71 % (rule: at least 0.2 %)"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.splitlines()[0] == "AAPL up 1.71 % in 1 min (rule: at least 0.2 %)" and "Value:     1.71 %" in text
    assert "0.870928" not in text and "1.7123" not in text


def test_a_digest_goes_to_an_apprise_channel_as_one_message(sessions: sessionmaker[Session],  # noqa: F811
                                                            settings: Settings, receiver: Receiver) -> None:  # noqa: F811
    user = make_user(sessions)
    ch = make_channel(sessions, user, "apprise", f"ntfy://127.0.0.1:{receiver.port}/digest")
    first = fire(sessions, alert(user, [ch], n=1))
    second = fire(sessions, alert(user, [ch], rule_id=2, n=2))
    assert notify.deliver(sessions, first, settings, replace(FAST, digest=True)).status == "delivered"
    [req] = receiver.got()
    doc = json.loads(req.body)
    assert doc["title"] == "2 Tickerbell alerts" and len(doc["message"].splitlines()) == 2
    assert delivery(sessions, second).status == "delivered"
