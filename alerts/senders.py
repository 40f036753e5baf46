"""Sending one rendered notification on a channel, by the channel's kind.

Kinds: ``email`` (SMTP), ``slack`` (an incoming-webhook URL), ``webhook`` (Standard
Webhooks signed JSON), ``apprise`` (an Apprise URL of :data:`alerts.apprise_channel.SERVICES`:
Telegram, Discord, Teams, ntfy, Pushover, ...), ``slack_bot`` (a bot token as the channel's
secret, the Slack channel as its target; the resolve of an alert updates the message it
posted, see :func:`original_ref`).

Every function here sends once and never raises for a failed send: the delivery log in
:mod:`alerts.notify` claims, records and retries. Channel URLs and tokens are secrets
and are never logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import messages, slack_bot
from alerts.apprise_channel import ATTACHING, send_apprise
from alerts.chart_image import Candle, Marker, chart_link, reachable_from_outside, render_chart
from alerts.retry import NotifyConfig, Outcome
from alerts.transport import http_client, send_email, send_http
from events import models, vocabulary
from events.contract import Alert
from events.settings import Settings

__all__ = ["CHART_BARS", "Sent", "chart_for", "extras", "needs_extras", "original_ref", "send_digest", "send_one"]

log = logging.getLogger(__name__)
CHART_BARS = 60          # bars of the alert's symbol drawn in an email's chart
REF_LOOKBACK = 200       # deliveries of a channel searched for the message a resolve updates
# chat.update cannot edit these: post the resolve as a new message instead
_NOT_UPDATABLE = ("Slack: message_not_found", "Slack: cant_update_message", "Slack: edit_window_closed")


@dataclass(frozen=True)
class Sent:
    """A send's outcome and, where the receiver made a message that can be edited, where it is."""

    outcome: Outcome
    external_ref: str | None = None


def _http(channel: models.Channel, body: bytes, headers: dict[str, str], settings: Settings,
          config: NotifyConfig, client: httpx.Client | None) -> Outcome:
    return send_http(client or http_client(), channel.target, body, headers,
                     allow_private=settings.allow_private_webhooks, timeout_s=config.http_timeout_s)


def send_one(channel: models.Channel, ctx: dict[str, Any], msg_id: str, settings: Settings, config: NotifyConfig,
             client: httpx.Client | None = None, *, test: bool = False, chart: bytes | None = None,
             update_ref: str | None = None) -> Sent:
    """Render and send one alert on ``channel``.

    ``chart``: the alert's PNG, for the email's HTML part, an Apprise attachment, and (as a signed
    link the web app serves, when Slack can reach ``PUBLIC_URL``) a Slack image. ``update_ref``: the ``channel:ts`` of the
    Slack message a resolve replaces (``slack_bot`` only; posted anew when Slack cannot edit it).
    """
    kind = channel.kind
    if kind == "email":
        msg = messages.build_email(ctx, settings.mail_from, channel.target, chart_png=chart,
                                   domain=messages.mail_domain(settings.public_url))
        messages.identify(msg, msg_id, settings.public_url)
        return Sent(send_email(settings.smtp_url.get(), messages.dated(msg), config.smtp_timeout_s))
    if kind == "slack":
        body = messages.json_bytes(messages.slack_payload(ctx, _image_url(ctx, chart, settings)))
        return Sent(_http(channel, body, {"content-type": "application/json"}, settings, config, client))
    if kind == "webhook":
        body = messages.webhook_body(channel.body_template, ctx, test=test)
        headers = messages.webhook_headers(channel.secret, msg_id, int(time.time()), body)
        return Sent(_http(channel, body, headers, settings, config, client))
    if kind == "apprise":
        title, text = messages.plain_message(ctx)
        return Sent(send_apprise(channel.target, title, text, allow_private=settings.allow_private_webhooks,
                                 timeout_s=config.http_timeout_s, image_png=chart))
    if kind == "slack_bot":
        payload = messages.slack_payload(ctx, _image_url(ctx, chart, settings))
        return _send_slack_bot(channel, payload, settings, config, update_ref)
    return Sent(Outcome(False, None, f"unknown channel kind {kind!r}"))


def _image_url(ctx: dict[str, Any], chart: bytes | None, settings: Settings) -> str | None:
    """The chart's signed link for a Slack message: only for a chart that exists (the web app draws the
    same one from the database, and Slack refuses a message whose image fails) and a reachable app."""
    if chart is None or not reachable_from_outside(settings.public_url):
        return None
    return chart_link(settings.public_url, settings.secret_key.get(), str(ctx["alert_id"]), time.time())


def _send_slack_bot(channel: models.Channel, payload: dict[str, Any], settings: Settings, config: NotifyConfig,
                    update_ref: str | None) -> Sent:
    token = channel.secret or ""
    common: dict[str, Any] = {"allow_private": settings.allow_private_webhooks, "timeout_s": config.http_timeout_s,
                              "api_base": settings.slack_api_url}
    if update_ref is not None and ":" in update_ref:
        where, ts = update_ref.split(":", 1)
        updated = slack_bot.update_message(token, where, ts, payload["text"], payload.get("blocks"), **common)
        if updated.outcome.ok or updated.outcome.error not in _NOT_UPDATABLE:
            return Sent(updated.outcome, update_ref if updated.outcome.ok else None)
    posted = slack_bot.post_message(token, channel.target, payload["text"], payload.get("blocks"), **common)
    ref = f"{posted.channel}:{posted.ts}" if posted.outcome.ok and posted.channel and posted.ts else None
    return Sent(posted.outcome, ref)


def send_digest(channel: models.Channel, ctxs: list[dict[str, Any]], msg_id: str, settings: Settings,
                config: NotifyConfig, client: httpx.Client | None = None) -> Outcome:
    """Send several alerts as one message on ``channel`` (a digest is never edited later)."""
    kind = channel.kind
    if kind == "email":
        msg = messages.build_digest_email(ctxs, settings.mail_from, channel.target)
        messages.identify(msg, msg_id, settings.public_url)
        return send_email(settings.smtp_url.get(), messages.dated(msg), config.smtp_timeout_s)
    if kind == "slack":
        body = messages.json_bytes(messages.digest_slack_payload(ctxs))
        return _http(channel, body, {"content-type": "application/json"}, settings, config, client)
    if kind == "webhook":
        body = messages.digest_webhook_body(ctxs)
        headers = messages.webhook_headers(channel.secret, msg_id, int(time.time()), body)
        return _http(channel, body, headers, settings, config, client)
    if kind == "apprise":
        title, text = messages.plain_digest(ctxs)
        return send_apprise(channel.target, title, text, allow_private=settings.allow_private_webhooks,
                            timeout_s=config.http_timeout_s)
    if kind == "slack_bot":
        return _send_slack_bot(channel, messages.digest_slack_payload(ctxs), settings, config, None).outcome
    return Outcome(False, None, f"unknown channel kind {kind!r}")


def original_ref(session: Session, channel_id: int, alert: Alert, test_prefix: str = "test:") -> str | None:
    """The ``channel:ts`` of the message the firing of ``alert``'s rule and symbol posted on the channel,
    for its resolve to update; None when there is none (the resolve is then posted)."""
    if alert.state != "resolved":
        return None
    rows = session.execute(
        select(models.Delivery.external_ref, models.Delivery.payload)
        .where(models.Delivery.channel_id == channel_id, models.Delivery.status == "delivered",
               models.Delivery.external_ref.is_not(None), ~models.Delivery.alert_id.startswith(test_prefix))
        .order_by(models.Delivery.id.desc()).limit(REF_LOOKBACK)).all()
    for ref, payload in rows:
        p = payload or {}
        if p.get("state") == "firing" and p.get("rule_id") == alert.rule_id and p.get("symbol") == alert.symbol:
            return str(ref)
    return None


def extras(session: Session, channel: models.Channel, alert: Alert, bar_seconds: int) -> tuple[bytes | None, str | None]:
    """What a send on ``channel`` needs from the database: the alert's chart (email, Slack, the Apprise
    services that take an image), the Slack message a resolve updates. A chart that cannot be drawn
    is left out (logged): the message still goes. The channels of one alert share one rendering
    (the chart cache of :func:`alerts.chart_image.render_chart`)."""
    ref = original_ref(session, channel.id, alert) if channel.kind == "slack_bot" else None
    if not _shows_chart(channel):
        return None, ref
    try:
        return chart_for(session, alert, bar_seconds), ref
    except Exception:  # noqa: BLE001 - the picture is an extra; the alert must not wait for it
        log.exception("alert %s: the chart could not be drawn; sent without it", alert.id)
        return None, ref


def needs_extras(channel: models.Channel) -> bool:
    """Whether :func:`extras` has anything to read for a send on ``channel`` (a webhook has not)."""
    return channel.kind == "slack_bot" or _shows_chart(channel)


def _shows_chart(channel: models.Channel) -> bool:
    if channel.kind in ("email", "slack", "slack_bot"):
        return True
    return channel.kind == "apprise" and channel.target.split("://", 1)[0].strip().lower() in ATTACHING


def marker_price(alert: Alert, candles: list[Candle]) -> float:
    """Where the alert's marker sits, by the web chart's rule (``TB.fmt.markerPrice`` in app.js): a
    price level at its value; otherwise at the price it fired at (the tick price for a tick series,
    the bar close for a bar series, from its evidence), else at the close of the bar it fell in."""
    if alert.value is not None and vocabulary.price_level(alert.series, alert.op):
        return float(alert.value)
    ev = alert.evidence or {}
    series = vocabulary.SERIES.get(alert.series)
    tick = series is not None and series.source == "tick"
    for key in (("price", "close") if tick else ("close", "price")):
        if ev.get(key) is not None:
            return float(ev[key])
    before = [c.close for c in candles if (c.start_ms <= alert.ts if tick else c.start_ms < alert.ts)]
    return before[-1] if before else candles[-1].close


def chart_for(session: Session, alert: Alert, bar_seconds: int) -> bytes | None:
    """The PNG of the last :data:`CHART_BARS` bars of the alert's symbol with the alert marked, or None
    when the bars projection has none (the message then goes without a picture)."""
    bars = session.scalars(
        select(models.BarRecord)
        .where(models.BarRecord.symbol == alert.symbol, models.BarRecord.bar_seconds == bar_seconds,
               models.BarRecord.start_ms <= alert.ts)
        .order_by(models.BarRecord.start_ms.desc()).limit(CHART_BARS)).all()
    if not bars:
        return None
    candles = [Candle(b.start_ms, b.open, b.high, b.low, b.close) for b in reversed(bars)]
    label = messages.fmt_alert_value(alert)
    level = alert.threshold if vocabulary.price_level(alert.series, alert.op) else None
    return render_chart(alert.symbol, candles, Marker(alert.ts, marker_price(alert, candles), label, level),
                        bar_seconds=bar_seconds)
