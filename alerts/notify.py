"""Delivering one (alert, channel) pair, at most once, with every attempt logged.

The delivery row is the guard. :func:`deliver` first moves it from
``pending`` (and due) to ``sending`` in one UPDATE; only the caller whose
UPDATE matched sends, so a redelivered Celery task, a duplicate enqueue or a
second worker finds nothing to do. While ``sending``, ``next_attempt_at``
holds the lease expiry: a worker killed mid-send leaves a row the
:func:`sweep` hands back to ``pending`` after the lease (the message may
then go out twice; receivers deduplicate by ``webhook-id`` / Message-ID).

Outcomes: delivered; retry (``pending`` with ``next_attempt_at`` on the
schedule); ``failed`` (a 4xx other than 408/429, a refused URL, a disabled
channel); ``dead`` (retries exhausted). A 410 disables the channel at once;
a channel failing for ``disable_after_s`` is disabled; either way its user is
told by email.

The mails an account holder asks for (an email channel's confirmation link, a sign-up's link)
are no deliveries: :mod:`alerts.account_mail` sends them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import httpx
import msgspec
from sqlalchemy import or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alerts import messages, senders
from alerts.messages import dated
from alerts.retry import NotifyConfig, Outcome, next_delay_s
from alerts.templates import alert_context
from alerts.transport import send_email
from events import models
from events.contract import Alert
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["DeliveryResult", "channel_send", "create_test_delivery", "deliver", "refusal", "sweep", "test_send"]

# the mails to an account holder (confirmation and sign-up links) are alerts.account_mail's

def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)  # SQLite returns naive UTC
    return dt


def channel_send(channel: models.Channel, ctx: dict[str, Any], msg_id: str, settings: Settings,
                 config: NotifyConfig, client: httpx.Client | None = None, test: bool = False) -> Outcome:
    """Render and send one notification on ``channel``; never raises for a failed send."""
    return senders.send_one(channel, ctx, msg_id, settings, config, client, test=test).outcome


TEST_PREFIX = "test:"  # the alert id of a test delivery: one attempt, no retries, no channel bookkeeping
UNCONFIRMED = ("not sent: this email address is not confirmed yet (its owner must follow the link in the "
               "confirmation mail)")
_NOT_THE_RECEIVERS_FAULT = ("channel disabled", "not sent:")


def test_alert(channel: models.Channel, now_ms: int | None = None) -> Alert:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return Alert(id=f"{TEST_PREFIX}{channel.id}:{now_ms}", ts=now_ms, rule_id=0, rule_version=0,
                 user_id=channel.user_id, state="firing", symbol="TEST", trigger_event_id="test", series="price",
                 op="greater_than", value=123.45, threshold=120.0, rule_name="Test notification",
                 message="Test notification from Tickerbell: this channel works.",
                 evidence={"price": 123.45, "close": 123.45})


def refusal(channel: models.Channel | None) -> Outcome | None:
    """Why nothing may be sent on ``channel`` (an outcome to record), or None when it may."""
    if channel is None or not channel.enabled:
        reason = channel.disabled_reason if channel is not None else None
        return Outcome(False, None, "channel disabled" + (f": {reason}" if reason else ""))
    if channel.kind == "email" and channel.confirmed_at is None:
        return Outcome(False, None, UNCONFIRMED)
    return None


def create_test_delivery(session: Session, channel: models.Channel) -> int:
    """A delivery row for a test message on ``channel`` (the caller commits and enqueues its id)."""
    alert = test_alert(channel)
    d = models.Delivery(alert_id=alert.id, channel_id=channel.id, user_id=channel.user_id, status="pending",
                        payload=msgspec.to_builtins(alert))
    session.add(d)
    session.flush()
    return d.id


def test_send(session: Session, channel_id: int, settings: Settings, config: NotifyConfig | None = None) -> dict[str, Any]:
    """Send a test message on a channel now (the operator's CLI); ``{"ok", "status_code", "error"}``.
    Blocks up to the send's deadline. The web app enqueues a test delivery instead."""
    channel = session.get(models.Channel, channel_id)
    if channel is None:
        return {"ok": False, "status_code": None, "error": f"no channel {channel_id}"}
    alert = test_alert(channel)
    outcome = refusal(channel) or channel_send(
        channel, alert_context(alert, settings.public_url, settings.bar_seconds),
        messages.webhook_id(alert.id, channel_id), settings, config or NotifyConfig(), test=True)
    return {"ok": outcome.ok, "status_code": outcome.status_code, "error": outcome.error}


def guarded(send: Callable[[], senders.Sent]) -> senders.Sent:
    """``send()``, or a final failure naming what raised: a message that cannot even be built (say, a
    header from a row saved before names were checked) would otherwise crash the task, leave the row
    'sending', and come back with the lease to crash again, for ever."""
    try:
        return send()
    except Exception as exc:  # noqa: BLE001 - turned into an outcome the log shows
        log.exception("building or sending a message raised")
        return senders.Sent(Outcome(False, None, f"not sent: {type(exc).__name__}: {exc}"[:500], retryable=False))


@dataclass(frozen=True)
class DeliveryResult:
    status: str                     # skipped | delivered | retry | failed | dead
    retry_in_s: float | None = None


@dataclass(frozen=True)
class _Claimed:
    """What a worker needs of a delivery it claimed: read in the claim's own transaction."""

    alert_id: str
    channel_id: int
    attempts: int
    alert: Alert
    channel: models.Channel | None   # detached; None when the channel is gone

    @property
    def test(self) -> bool:
        return self.alert_id.startswith(TEST_PREFIX)


def _claim(sessions: sessionmaker[Session], delivery_id: int, config: NotifyConfig, now: datetime) -> _Claimed | None:
    """Move the row from ``pending`` (and due) to ``sending`` and read what the send needs, in one
    transaction: the UPDATE returns the row's fields, the channel is read before the commit. None
    when another caller has it, it is not due, or it is done."""
    with sessions() as s:
        row = s.execute(
            update(models.Delivery)
            .where(models.Delivery.id == delivery_id, models.Delivery.status == "pending",
                   or_(models.Delivery.next_attempt_at.is_(None), models.Delivery.next_attempt_at <= now))
            .values(status="sending", attempts=models.Delivery.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=config.lease_s))
            .returning(models.Delivery.alert_id, models.Delivery.channel_id, models.Delivery.attempts,
                       models.Delivery.payload)
            .execution_options(synchronize_session=False)
        ).first()
        if row is None:
            s.rollback()
            return None
        channel = s.get(models.Channel, row.channel_id)
        if channel is not None:
            s.expunge(channel)
        s.commit()
    return _Claimed(row.alert_id, row.channel_id, row.attempts, msgspec.convert(row.payload, Alert), channel)


def deliver(sessions: sessionmaker[Session], delivery_id: int, settings: Settings, config: NotifyConfig,
            client: httpx.Client | None = None) -> DeliveryResult:
    """Claim, send and record one delivery. Safe to call any number of times for the same id.

    With digests on, every due delivery of the same channel is claimed with it and they go
    out as one message (see :func:`deliver_group`).
    """
    if config.digest:
        with sessions() as s:
            alert_id = s.scalar(select(models.Delivery.alert_id).where(models.Delivery.id == delivery_id))
        if alert_id is not None and not alert_id.startswith(TEST_PREFIX):
            return deliver_group(sessions, delivery_id, settings, config, client)
    claimed = _claim(sessions, delivery_id, config, utcnow())
    if claimed is None:
        return DeliveryResult("skipped")
    channel, alert, test = claimed.channel, claimed.alert, claimed.test
    msg_id = messages.webhook_id(claimed.alert_id, claimed.channel_id)
    chart: bytes | None = None
    update_ref: str | None = None
    if channel is not None and not test and senders.needs_extras(channel):
        with sessions() as s:  # read-only: the chart's bars, the Slack message a resolve updates
            chart, update_ref = senders.extras(s, channel, alert, settings.bar_seconds)
    # no transaction stays open over the network call
    started = time.perf_counter()
    refused = refusal(channel)
    if refused is not None or channel is None:
        sent = senders.Sent(refused or Outcome(False, None, "channel disabled"))
    else:
        ctx = alert_context(alert, settings.public_url, settings.bar_seconds)
        sent = guarded(lambda: senders.send_one(channel, ctx, msg_id, settings, config, client, test=test,
                                                chart=chart, update_ref=update_ref))
    duration_ms = (time.perf_counter() - started) * 1000
    return _record(sessions, delivery_id, claimed.attempts, sent.outcome, duration_ms, settings, config, test=test,
                   external_ref=sent.external_ref)


def deliver_group(sessions: sessionmaker[Session], delivery_id: int, settings: Settings, config: NotifyConfig,
                  client: httpx.Client | None = None) -> DeliveryResult:
    """Claim every due delivery of ``delivery_id``'s channel and send them as one digest.

    One claimed delivery goes out as a normal message. The digest's id is derived from its
    alert ids, so a retry of the same group carries the same ``webhook-id``.
    """
    now = utcnow()
    with sessions() as s:
        channel_id = s.scalar(select(models.Delivery.channel_id).where(models.Delivery.id == delivery_id))
        if channel_id is None:
            return DeliveryResult("skipped")
        claimed = s.execute(
            update(models.Delivery)
            .where(models.Delivery.channel_id == channel_id, models.Delivery.status == "pending",
                   ~models.Delivery.alert_id.startswith(TEST_PREFIX),
                   or_(models.Delivery.next_attempt_at.is_(None), models.Delivery.next_attempt_at <= now))
            .values(status="sending", attempts=models.Delivery.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=config.lease_s))
            .returning(models.Delivery.id, models.Delivery.attempts)
            .execution_options(synchronize_session=False)
        ).all()
        s.commit()
        if not claimed:
            return DeliveryResult("skipped")
        rows = sorted(s.scalars(select(models.Delivery).where(models.Delivery.id.in_([c[0] for c in claimed]))).all(),
                      key=lambda d: (d.created_at, d.id))
        alerts = [msgspec.convert(d.payload, Alert) for d in rows]
        channel = s.get(models.Channel, channel_id)
        if channel is not None:
            s.expunge(channel)
    started = time.perf_counter()
    refused = refusal(channel)
    if refused is not None or channel is None:
        outcome = refused or Outcome(False, None, "channel disabled")
    elif len(alerts) == 1:
        ctx = alert_context(alerts[0], settings.public_url, settings.bar_seconds)
        outcome = guarded(lambda: senders.Sent(channel_send(
            channel, ctx, messages.webhook_id(alerts[0].id, channel_id), settings, config, client))).outcome
    else:
        ctxs = [alert_context(a, settings.public_url, settings.bar_seconds) for a in alerts]
        outcome = guarded(lambda: senders.Sent(digest_send(
            channel, ctxs, messages.digest_id([a.id for a in alerts], channel_id), settings, config, client))).outcome
    duration_ms = (time.perf_counter() - started) * 1000
    attempts = dict(claimed)
    results = [_record(sessions, d.id, attempts[d.id], outcome, duration_ms, settings, config) for d in rows]
    mine = next((r for d, r in zip(rows, results) if d.id == delivery_id), results[0])
    return mine


def digest_send(channel: models.Channel, ctxs: list[dict[str, Any]], msg_id: str, settings: Settings,
                config: NotifyConfig, client: httpx.Client | None = None) -> Outcome:
    """Send several alerts as one message on ``channel``."""
    return senders.send_digest(channel, ctxs, msg_id, settings, config, client)


def _record(sessions: sessionmaker[Session], delivery_id: int, attempts: int, outcome: Outcome,
            duration_ms: float, settings: Settings, config: NotifyConfig, test: bool = False,
            external_ref: str | None = None) -> DeliveryResult:
    """Record the outcome of a send that has happened. The database being away now must not
    turn into a second copy of the message (the lease would re-send it): keep trying for up to
    half the lease, then give up and let the lease take over (at-least-once)."""
    from events.kafka import Backoff

    deadline = time.monotonic() + config.lease_s / 2
    backoff = Backoff(first_s=0.25, max_s=2.0)
    while True:
        try:
            return _record_once(sessions, delivery_id, attempts, outcome, duration_ms, settings, config, test,
                                external_ref)
        except (OperationalError, InterfaceError) as exc:
            delay = backoff.failed()
            if time.monotonic() + delay > deadline:
                raise
            log.warning("delivery %s: sent, but recording it failed (%s); retrying in %.1f s",
                        delivery_id, type(exc).__name__, delay, extra={"delivery_id": delivery_id})
            time.sleep(delay)
        except Exception as exc:  # noqa: BLE001 - a bug or bad data in the bookkeeping
            # Raising here would leave the row 'sending': the lease hands it back, the message goes
            # out again and fails the same way, for ever. The attempt happened: record it plainly.
            log.exception("delivery %s: recording the attempt failed; recorded without its side effects",
                          delivery_id, extra={"delivery_id": delivery_id})
            return _record_plain(sessions, delivery_id, attempts, outcome, duration_ms,
                                 f"{type(exc).__name__}: {exc}", external_ref)


def _record_plain(sessions: sessionmaker[Session], delivery_id: int, attempts: int, outcome: Outcome,
                  duration_ms: float, problem: str, external_ref: str | None = None) -> DeliveryResult:
    """The attempt and a final status, nothing else (no retry, no channel bookkeeping)."""
    now = utcnow()
    error = outcome.error or ""
    note = f"recording failed ({problem})"[:300]
    with sessions() as s:
        d = s.get(models.Delivery, delivery_id)
        assert d is not None
        d.status = "delivered" if outcome.ok else "failed"
        d.delivered_at = now if outcome.ok else None
        d.external_ref = external_ref if outcome.ok else d.external_ref
        d.next_attempt_at = None
        d.last_status_code = outcome.status_code
        d.last_error = f"{error}; {note}" if error else note
        s.add(models.DeliveryAttempt(delivery_id=d.id, number=attempts, at=now, status_code=outcome.status_code,
                                     error=d.last_error, duration_ms=duration_ms))
        s.commit()
        return DeliveryResult(d.status)


def _record_once(sessions: sessionmaker[Session], delivery_id: int, attempts: int, outcome: Outcome,
                 duration_ms: float, settings: Settings, config: NotifyConfig, test: bool = False,
                 external_ref: str | None = None) -> DeliveryResult:
    now = utcnow()
    if outcome.ok:
        return _record_delivered(sessions, delivery_id, attempts, outcome, duration_ms, now, external_ref)
    with sessions() as s:
        d = s.get(models.Delivery, delivery_id)
        assert d is not None
        channel = s.get(models.Channel, d.channel_id)
        s.add(models.DeliveryAttempt(delivery_id=d.id, number=attempts, at=now, status_code=outcome.status_code,
                                     error=outcome.error, duration_ms=duration_ms))
        d.last_status_code = outcome.status_code
        d.last_error = outcome.error
        alert_id, channel_id = d.alert_id, d.channel_id
        # a failed attempt (a delivered one is _record_delivered's)
        delay = next_delay_s(attempts, config, outcome.retry_after_s) if outcome.retryable and not test else None
        if delay is not None:
            d.status, d.next_attempt_at = "pending", now + timedelta(seconds=delay)
            result = DeliveryResult("retry", delay)
        else:
            d.status, d.next_attempt_at = ("dead" if outcome.retryable and not test else "failed"), None
            result = DeliveryResult(d.status)
        if (channel is not None and channel.enabled and not test and outcome.error
                and not outcome.error.startswith(_NOT_THE_RECEIVERS_FAULT)):
            _note_failure(s, channel, outcome, now, settings, config)
        s.commit()
    log.info("delivery %s: %s (attempt %d, %s)", delivery_id, result.status, attempts, outcome.error or outcome.status_code,
             extra={"event_id": alert_id, "delivery_id": delivery_id, "channel_id": channel_id})
    return result


def _record_delivered(sessions: sessionmaker[Session], delivery_id: int, attempts: int, outcome: Outcome,
                      duration_ms: float, now: datetime, external_ref: str | None) -> DeliveryResult:
    """A delivered attempt, written without reading anything first: the row's final fields, its
    attempt, and the channel's failure streak ended (only where one was running)."""
    with sessions() as s:
        values: dict[str, Any] = dict(status="delivered", delivered_at=now, next_attempt_at=None,
                                      last_status_code=outcome.status_code, last_error=outcome.error)
        if external_ref:
            values["external_ref"] = external_ref
        row = s.execute(
            update(models.Delivery).where(models.Delivery.id == delivery_id).values(**values)
            .returning(models.Delivery.alert_id, models.Delivery.channel_id)
            .execution_options(synchronize_session=False)
        ).one()
        s.add(models.DeliveryAttempt(delivery_id=delivery_id, number=attempts, at=now, status_code=outcome.status_code,
                                     error=outcome.error, duration_ms=duration_ms))
        s.execute(update(models.Channel)
                  .where(models.Channel.id == row.channel_id, models.Channel.failing_since.is_not(None))
                  .values(failing_since=None).execution_options(synchronize_session=False))
        s.commit()
    log.info("delivery %s: delivered (attempt %d, %s)", delivery_id, attempts, outcome.status_code,
             extra={"event_id": row.alert_id, "delivery_id": delivery_id, "channel_id": row.channel_id})
    return DeliveryResult("delivered")


def _note_failure(s: Session, channel: models.Channel, outcome: Outcome, now: datetime,
                  settings: Settings, config: NotifyConfig) -> None:
    since = _aware(channel.failing_since)
    if since is None:
        channel.failing_since = since = now
    reason = None
    if outcome.gone:
        reason = "the receiver answered 410 Gone"
    elif (now - since).total_seconds() >= config.disable_after_s:
        reason = f"deliveries failed since {since:%Y-%m-%d %H:%M} UTC (last error: {outcome.error})"
    if reason is not None:
        channel.enabled = False
        channel.disabled_reason = reason[:500]
        _tell_user(s, channel, reason, settings, config)


def _tell_user(s: Session, channel: models.Channel, reason: str, settings: Settings, config: NotifyConfig) -> None:
    """Email the channel's owner that it was disabled (best effort: any failure is logged, never raised,
    because this runs inside the recording of an attempt)."""
    user = s.get(models.User, channel.user_id)
    log.warning("channel %s (%s) disabled: %s", channel.id, channel.kind, reason)
    if user is None or not user.email:
        return
    try:
        msg = messages.channel_disabled_email(channel.name, channel.kind, reason, settings.mail_from, user.email,
                                              settings.public_url)
        outcome = send_email(settings.smtp_url.get(), dated(msg, domain=messages.mail_domain(settings.public_url)),
                         config.smtp_timeout_s)
    except Exception as exc:  # noqa: BLE001 - telling the user is secondary to recording the attempt
        outcome = Outcome(False, None, f"{type(exc).__name__}: {exc}")
    if not outcome.ok:
        log.warning("could not tell user %s that channel %s was disabled: %s", user.id, channel.id, outcome.error)


def sweep(sessions: sessionmaker[Session], config: NotifyConfig, limit: int = 1000) -> list[int]:
    """Hand back expired leases and return the ids of deliveries due now (the beat task enqueues them)."""
    now = utcnow()
    with sessions() as s:
        s.execute(
            update(models.Delivery)
            .where(models.Delivery.status == "sending", models.Delivery.next_attempt_at <= now)
            .values(status="pending")
            .execution_options(synchronize_session=False)
        )
        ids = s.scalars(
            select(models.Delivery.id)
            .where(models.Delivery.status == "pending",
                   or_(models.Delivery.next_attempt_at.is_(None), models.Delivery.next_attempt_at <= now))
            .order_by(models.Delivery.next_attempt_at).limit(limit)
        ).all()
        s.commit()
    return list(ids)
