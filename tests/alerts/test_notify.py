"""Delivering one (alert, channel) pair against a real database, SMTP server and HTTP receiver."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from alerts import account_mail, notify
from alerts.dispatch import record_deliveries
from alerts.retry import NotifyConfig
from events import models
from events.contract import Alert
from events.db import make_engine
from events.settings import Secret, Settings
from tests.alerts.conftest import Receiver, SmtpServer
from tests.alerts.test_messages import SECRET

FAST = NotifyConfig(retry_schedule_s=(0, 0, 0, 0), jitter=0.0, lease_s=30)


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(make_engine(database_url), expire_on_commit=False)


@pytest.fixture
def settings(base_settings: Settings, smtp_server: SmtpServer) -> Settings:
    return replace(base_settings, smtp_url=Secret(smtp_server.url), allow_private_webhooks=True,
                   public_url="http://tb.test")


def make_user(sessions: sessionmaker[Session], email: str = "owner@example.com") -> int:
    with sessions() as s:
        user = models.User(email=email, password_hash="x")
        s.add(user)
        s.commit()
        return user.id


def make_channel(sessions: sessionmaker[Session], user_id: int, kind: str, target: str, **kw: object) -> int:
    kw.setdefault("name", kind)
    kw.setdefault("confirmed_at", datetime.now(timezone.utc))
    with sessions() as s:
        ch = models.Channel(user_id=user_id, kind=kind, target=target, enabled=True, **kw)
        s.add(ch)
        s.commit()
        return ch.id


def fire(sessions: sessionmaker[Session], user_id: int, channel_ids: list[int], n: int = 1) -> list[int]:
    alert = Alert(id=f"alert:{n:04d}", ts=1_795_000_000_000, rule_id=1, rule_version=1, user_id=user_id,
                  state="firing", symbol="AAPL", trigger_event_id=f"sim:AAPL:{n}", series="price", op="greater_than",
                  value=151.0, threshold=150.0, channel_ids=channel_ids, rule_name="r",
                  evidence={"price": 151.0})
    with sessions() as s:
        return record_deliveries(s, [alert])


def delivery(sessions: sessionmaker[Session], delivery_id: int) -> models.Delivery:
    with sessions() as s:
        d = s.get(models.Delivery, delivery_id)
        assert d is not None
        d.attempt_log  # load
        return d


def test_webhook_delivered_once_signed_and_logged(sessions, settings, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "webhook", receiver.url(), secret=SECRET)
    [did] = fire(sessions, user, [ch])
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    assert notify.deliver(sessions, did, settings, FAST).status == "skipped"  # a redelivered task
    assert fire(sessions, user, [ch]) == []  # the same alert again: no new row, nothing pending
    [req] = receiver.got()
    assert req.headers["webhook-id"] == "alert:0001.c%d" % ch
    assert Webhook(SECRET).verify(req.body, req.headers)["symbol"] == "AAPL"
    d = delivery(sessions, did)
    assert (d.status, d.attempts, d.last_status_code) == ("delivered", 1, 200)
    assert [(a.number, a.status_code, a.error) for a in d.attempt_log] == [(1, 200, None)]


def test_503_twice_then_200_is_one_delivery_with_three_attempts(sessions, settings, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "webhook", receiver.url(), secret=SECRET)
    receiver.script["/hook"] = [(503, {}), (503, {})]
    [did] = fire(sessions, user, [ch])
    results = [notify.deliver(sessions, did, settings, FAST).status for _ in range(4)]
    assert results == ["retry", "retry", "delivered", "skipped"]
    ids = {r.headers["webhook-id"] for r in receiver.got()}
    assert len(receiver.got()) == 3 and len(ids) == 1  # the same id on every retry
    d = delivery(sessions, did)
    assert [a.status_code for a in d.attempt_log] == [503, 503, 200]


def test_429_honours_retry_after(sessions, settings, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "slack", receiver.url("/slack"))
    receiver.script["/slack"] = [(429, {"Retry-After": "30"})]
    [did] = fire(sessions, user, [ch])
    before = datetime.now(timezone.utc)
    result = notify.deliver(sessions, did, settings, FAST)
    assert result.status == "retry" and result.retry_in_s == 30
    next_at = delivery(sessions, did).next_attempt_at
    assert next_at is not None and next_at.replace(tzinfo=timezone.utc) >= before + timedelta(seconds=29)
    assert notify.deliver(sessions, did, settings, FAST).status == "skipped"  # not due yet
    assert notify.sweep(sessions, FAST) == []
    body = receiver.got("/slack")[0].body
    assert b'"blocks"' in body and b'"text"' in body


def test_other_4xx_fail_at_once_and_410_disables_the_channel_and_tells_the_user(
        sessions, settings, receiver: Receiver, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    bad = make_channel(sessions, user, "webhook", receiver.url("/bad"))
    gone = make_channel(sessions, user, "webhook", receiver.url("/gone"))
    receiver.script["/bad"] = [(400, {})]
    receiver.script["/gone"] = [(410, {})]
    d_bad, d_gone = fire(sessions, user, [bad, gone])
    assert notify.deliver(sessions, d_bad, settings, FAST).status == "failed"
    assert notify.deliver(sessions, d_gone, settings, FAST).status == "failed"
    with sessions() as s:
        assert s.get(models.Channel, bad).enabled
        gone_ch = s.get(models.Channel, gone)
        assert not gone_ch.enabled and "410" in gone_ch.disabled_reason
    [mail] = smtp_server.messages
    assert mail["To"] == "owner@example.com" and "disabled" in mail["Subject"]
    # later alerts for the disabled channel are logged as failed without a request
    [later] = fire(sessions, user, [gone], n=2)
    assert notify.deliver(sessions, later, settings, FAST).status == "failed"
    assert len(receiver.got("/gone")) == 1


def test_a_control_character_in_a_channel_name_is_an_outcome_not_a_retry_loop(
        sessions, settings, receiver: Receiver, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    # a row saved before names were checked: its name goes into the "was disabled" mail's subject,
    # which smtplib's header check refused inside the recording of the attempt (issue 11, finding 7)
    user = make_user(sessions)
    gone = make_channel(sessions, user, "webhook", receiver.url("/gone"), name="Desk\r\nBcc: victim@example.com")
    receiver.script["/gone"] = [(410, {})]
    [did] = fire(sessions, user, [gone])
    assert notify.deliver(sessions, did, settings, FAST).status == "failed"
    d = delivery(sessions, did)
    assert (d.status, d.next_attempt_at, [a.status_code for a in d.attempt_log]) == ("failed", None, [410])
    assert notify.sweep(sessions, FAST) == []  # nothing left 'sending' for a lease to hand back
    [mail] = smtp_server.messages
    assert mail["Subject"] == "[Tickerbell] Notification channel 'Desk  Bcc: victim@example.com' was disabled"
    assert mail["Bcc"] is None and mail["To"] == "owner@example.com"
    assert len(receiver.got("/gone")) == 1


def test_a_channel_failing_for_days_is_disabled(sessions, settings, receiver: Receiver,
                                                smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "webhook", receiver.url("/down"),
                      failing_since=datetime.now(timezone.utc) - timedelta(days=4))
    receiver.script["/down"] = [(500, {})]
    [did] = fire(sessions, user, [ch])
    assert notify.deliver(sessions, did, settings, FAST).status == "retry"
    with sessions() as s:
        assert not s.get(models.Channel, ch).enabled
    assert len(smtp_server.messages) == 1


def test_a_delivered_attempt_ends_the_failure_streak_and_is_logged_once(
        sessions, settings, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """A delivered attempt is written without reading the row first: every field it owns, one
    attempt row, and the channel's failure streak ended; a healthy channel of the same user keeps
    what it had."""
    user = make_user(sessions)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    ch = make_channel(sessions, user, "webhook", receiver.url("/flaky"), failing_since=since)
    other = make_channel(sessions, user, "webhook", receiver.url("/down"), failing_since=since)
    receiver.script["/flaky"] = [(500, {}), (200, {})]
    [did, other_did] = fire(sessions, user, [ch, other])
    assert notify.deliver(sessions, did, settings, FAST).status == "retry"
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    d = delivery(sessions, did)
    assert (d.status, d.attempts, d.last_status_code, d.last_error, d.next_attempt_at) == ("delivered", 2, 200, None, None)
    assert d.delivered_at is not None
    assert [(a.number, a.status_code) for a in d.attempt_log] == [(1, 500), (2, 200)]
    with sessions() as s:
        assert s.get(models.Channel, ch).failing_since is None
        assert s.get(models.Channel, other).failing_since is not None  # untouched: not this channel's send
    assert delivery(sessions, other_did).status == "pending"


def test_email_delivery(sessions, settings, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "trader@example.com")
    [did] = fire(sessions, user, [ch])
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    [mail] = smtp_server.messages
    assert mail["To"] == "trader@example.com" and mail["Message-ID"] == f"<alert.0001.c{ch}@tb.test>"
    assert mail.is_multipart() and {p.get_content_type() for p in mail.walk()} >= {"text/plain", "text/html"}
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "http://tb.test/symbols/AAPL" in html and "151" in html


def test_smtp_down_retries(sessions, settings) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "trader@example.com")
    [did] = fire(sessions, user, [ch])
    down = replace(settings, smtp_url=Secret("smtp://127.0.0.1:1"))
    result = notify.deliver(sessions, did, down, FAST)
    assert result.status == "retry"
    assert "Connection refused" in (delivery(sessions, did).last_error or "")


def test_private_webhook_refused_unless_allowed(sessions, settings, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "webhook", receiver.url())
    [did] = fire(sessions, user, [ch])
    strict = replace(settings, allow_private_webhooks=False)
    assert notify.deliver(sessions, did, strict, FAST).status == "failed"
    assert "loopback" in (delivery(sessions, did).last_error or "") and receiver.got() == []
    with sessions() as s:
        assert notify.test_send(s, ch, strict)["ok"] is False
        assert notify.test_send(s, ch, settings) == {"ok": True, "status_code": 200, "error": None}


def test_sweep_hands_back_expired_leases(sessions, settings, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "webhook", receiver.url())
    [did] = fire(sessions, user, [ch])
    with sessions() as s:  # a worker claimed it and died
        d = s.get(models.Delivery, did)
        d.status, d.attempts = "sending", 1
        d.next_attempt_at = datetime.now(timezone.utc) - timedelta(seconds=1)
        s.commit()
    assert notify.deliver(sessions, did, settings, FAST).status == "skipped"
    assert notify.sweep(sessions, FAST) == [did]
    assert notify.deliver(sessions, did, settings, FAST).status == "delivered"
    assert delivery(sessions, did).attempts == 2


def test_deliveries_only_to_the_owners_channels(sessions) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_user(sessions, "a@x.y"), make_user(sessions, "b@x.y")
    mine = make_channel(sessions, alice, "email", "a@x.y")
    theirs = make_channel(sessions, bob, "email", "b@x.y")
    ids = fire(sessions, alice, [mine, theirs, 9999])
    with sessions() as s:
        rows = s.scalars(select(models.Delivery)).all()
    assert len(ids) == 1 and [(r.channel_id, r.user_id) for r in rows] == [(mine, alice)]
    assert msgspec.convert(rows[0].payload, Alert).symbol == "AAPL"


def test_digest_groups_one_users_alerts_per_channel(sessions, settings, receiver: Receiver,
                                                    smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace as dc_replace

    from tests.alerts.conftest import wait_for

    digest = dc_replace(FAST, digest=True)
    user = make_user(sessions)
    hook = make_channel(sessions, user, "webhook", receiver.url("/digest"), secret=SECRET)
    mail = make_channel(sessions, user, "email", "trader@example.com")
    receiver.script["/digest"] = [(503, {})]
    alerts = [Alert(id=f"alert:g{i}", ts=1_795_000_000_000 + i, rule_id=1, rule_version=1, user_id=user,
                    state="firing", symbol=sym, trigger_event_id=f"t{i}", series="price", op="greater_than",
                    value=151.0 + i, threshold=150.0, channel_ids=[hook, mail])
              for i, sym in enumerate(["AAPL", "MSFT", "NVDA"])]
    with sessions() as s:
        ids = record_deliveries(s, alerts[:2], digest_window_s=0.5)
    with sessions() as s:  # a later alert joins the open window instead of opening its own
        ids += record_deliveries(s, alerts[2:], digest_window_s=0.5)
    with sessions() as s:
        due = {d.next_attempt_at for d in s.scalars(select(models.Delivery)).all()}
    assert len(ids) == 6 and len(due) == 1  # both windows opened together; the later alert joined them
    assert notify.deliver(sessions, ids[0], settings, digest).status == "skipped"  # the window is still open
    wait_for(lambda: len(notify.sweep(sessions, digest)) == 6, timeout_s=10, what="the windows to close")
    hook_ids = [i for i in ids if delivery(sessions, i).channel_id == hook]
    mail_ids = [i for i in ids if delivery(sessions, i).channel_id == mail]
    assert notify.deliver(sessions, hook_ids[0], settings, digest).status == "retry"  # 503: the group retries
    assert notify.deliver(sessions, hook_ids[1], settings, digest).status == "delivered"
    assert notify.deliver(sessions, mail_ids[2], settings, digest).status == "delivered"
    assert {delivery(sessions, i).status for i in ids} == {"delivered"}
    first, second = receiver.got("/digest")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # the same digest, retried
    body = Webhook(SECRET).verify(second.body, second.headers)
    assert body["type"] == "alert.digest" and [a["symbol"] for a in body["alerts"]] == ["AAPL", "MSFT", "NVDA"]
    [mail_msg] = smtp_server.messages
    assert mail_msg["Subject"] == "[Tickerbell] 3 alerts: AAPL, MSFT, NVDA"
    assert "NVDA" in mail_msg.get_body(("plain",)).get_content()


def test_a_send_is_recorded_once_the_database_is_back_not_sent_again(
        postgres_url: str, settings: Settings, receiver: Receiver) -> None:
    """The database goes away between the send and its recording: the worker keeps trying to
    record the outcome (within half the lease) instead of leaving the row to be re-sent."""
    import getpass
    import threading

    from events.db import upgrade
    from tests.chaos.infra import CuttableProxy
    from tests.conftest import PG_SOCKET_DIR

    upgrade(postgres_url)
    proxy = CuttableProxy(f"{PG_SOCKET_DIR}/.s.PGSQL.5432")
    proxy.restore()
    name = postgres_url.split("///", 1)[1].split("?", 1)[0]
    engine = make_engine(f"postgresql+psycopg://{getpass.getuser()}@127.0.0.1:{proxy.port}/{name}"
                         "?sslmode=disable&gssencmode=disable&connect_timeout=2")
    proxied = sessionmaker(engine, expire_on_commit=False)
    user = make_user(proxied)
    ch = make_channel(proxied, user, "webhook", receiver.url(), secret=SECRET)
    [did] = fire(proxied, user, [ch])
    back = threading.Timer(3.0, proxy.restore)  # the outage lasts 3 s from the moment of the send

    def cut_during_send() -> None:
        proxy.cut()
        back.start()

    receiver.on_request = cut_during_send
    try:
        result = notify.deliver(proxied, did, settings, NotifyConfig(retry_schedule_s=(0, 0), jitter=0.0, lease_s=30))
    finally:
        if back.ident is not None:
            back.join(10)
        engine.dispose()
        proxy.cut()
    assert result.status == "delivered"
    assert len(receiver.got()) == 1
    with sessionmaker(make_engine(postgres_url))() as s:
        d = s.get(models.Delivery, did)
        assert d is not None
        assert (d.status, d.attempts) == ("delivered", 1)
        assert len(d.attempt_log) == 1


# --- email confirmation and test deliveries (issue 11, finding 6) ---------------------------------


def test_an_unconfirmed_email_channel_receives_nothing_and_is_not_counted_as_failing(
        sessions, settings, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "someone@example.com", confirmed_at=None)
    [did] = fire(sessions, user, [ch])
    assert notify.deliver(sessions, did, settings, FAST).status == "failed"
    d = delivery(sessions, did)
    assert d.last_error == notify.UNCONFIRMED and [a.error for a in d.attempt_log] == [notify.UNCONFIRMED]
    assert smtp_server.messages == []
    with sessions() as s:
        channel = s.get(models.Channel, ch)
        assert channel.enabled and channel.failing_since is None  # the receiver did nothing wrong
        assert notify.test_send(s, ch, settings)["error"] == notify.UNCONFIRMED
    assert smtp_server.messages == []


def test_the_confirmation_mail_carries_a_signed_link_for_that_address(
        sessions, settings, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    from alerts.confirmation import ConfirmationInvalid, read_confirmation_token

    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "desk@example.com", name="Desk\nx", confirmed_at=None)
    assert account_mail.send_confirmation(sessions, ch, settings, FAST) == "sent"
    [mail] = smtp_server.messages
    assert mail["To"] == "desk@example.com"
    text = mail.get_body(("plain",)).get_content()
    token = text.split("http://tb.test/channels/confirm/", 1)[1].split()[0]
    confirmed = read_confirmation_token(settings.secret_key.get(), token)
    assert (confirmed.channel_id, confirmed.address) == (ch, "desk@example.com")
    with pytest.raises(ConfirmationInvalid, match="not valid"):
        read_confirmation_token("another key", token)
    with pytest.raises(ConfirmationInvalid, match="expired"):
        read_confirmation_token(settings.secret_key.get(), token, max_age_s=-1)
    # a confirmed channel, or a webhook, gets no such mail
    hook = make_channel(sessions, user, "webhook", "http://127.0.0.1:9/h")
    assert account_mail.send_confirmation(sessions, hook, settings, FAST) == "skipped"
    with sessions() as s:
        s.get(models.Channel, ch).confirmed_at = datetime.now(timezone.utc)
        s.commit()
    assert account_mail.send_confirmation(sessions, ch, settings, FAST) == "skipped"
    assert len(smtp_server.messages) == 1


def test_a_test_delivery_is_tried_once_and_leaves_the_channel_alone(
        sessions, settings, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    user = make_user(sessions)
    ch = make_channel(sessions, user, "webhook", receiver.url("/t"), secret=SECRET)
    receiver.script["/t"] = [(503, {}), (410, {})]
    with sessions() as s:
        did = notify.create_test_delivery(s, s.get(models.Channel, ch))
        s.commit()
    assert notify.deliver(sessions, did, settings, FAST).status == "failed"  # 503: no retry for a test
    assert notify.deliver(sessions, did, settings, FAST).status == "skipped"
    with sessions() as s:
        did2 = notify.create_test_delivery(s, s.get(models.Channel, ch))
        s.commit()
    assert notify.deliver(sessions, did2, settings, replace(FAST, digest=True)).status == "failed"  # 410
    with sessions() as s:
        channel = s.get(models.Channel, ch)
        assert channel.enabled and channel.failing_since is None
    [first, second] = receiver.got("/t")
    assert Webhook(SECRET).verify(first.body, first.headers)["type"] == "alert.test"
    assert notify.sweep(sessions, FAST) == []


def test_a_message_that_cannot_be_built_is_a_final_outcome_not_a_crash(
        sessions, settings, smtp_server: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    # a row saved before addresses were checked: the To header itself is refused by the email package
    user = make_user(sessions)
    ch = make_channel(sessions, user, "email", "a@example.com\r\nBcc: victim@example.com")
    [did] = fire(sessions, user, [ch])
    assert notify.deliver(sessions, did, settings, FAST).status == "failed"
    d = delivery(sessions, did)
    assert d.status == "failed" and (d.last_error or "").startswith("not sent: ValueError")
    assert notify.sweep(sessions, FAST) == [] and smtp_server.messages == []

