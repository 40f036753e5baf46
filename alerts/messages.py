"""Rendering of notifications (pure): email parts, Slack Block Kit, webhook body and signature."""

from __future__ import annotations

import html
import json
import unicodedata
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from alerts.templates import default_message, fmt_value, render, render_json_body

__all__ = ["build_email", "channel_disabled_email", "confirmation_email", "dated", "identify", "mail_domain",
           "one_line", "plain_digest", "plain_message", "slack_payload", "webhook_body", "webhook_headers",
           "sign_webhook", "webhook_id"]


def one_line(text: str, limit: int = 200) -> str:
    """``text`` fit for a mail header: control characters (CR, LF, NUL...) and line separators become
    spaces. Names are validated when saved, but rows older than that check, templates and the CLI
    reach headers too, and a header smtplib refuses must never stop the recording of an attempt."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)[:limit]


def dated(msg: EmailMessage, now: datetime | None = None, domain: str = "tickerbell.local") -> EmailMessage:
    """Give ``msg`` its ``Date`` (RFC 5322 requires one; some filters mark mail without it), the send
    time in UTC; a retry is a new send and gets a new date, while its Message-ID stays. A mail that
    has no Message-ID yet (an account mail, a notice: no delivery to deduplicate) gets a new one
    on ``domain`` (:func:`mail_domain`)."""
    del msg["Date"]
    msg["Date"] = format_datetime(now or datetime.now(timezone.utc))
    if msg["Message-ID"] is None:
        msg["Message-ID"] = make_msgid(domain=domain)
    return msg


def mail_domain(public_url: str) -> str:
    """The app's domain for Message-IDs and image content ids: the host of ``PUBLIC_URL``."""
    return (urlsplit(public_url).hostname or "tickerbell.local").strip(".") or "tickerbell.local"


def identify(msg: EmailMessage, msg_id: str, public_url: str) -> EmailMessage:
    """Give ``msg`` its ``Message-ID``: ``<delivery id@app domain>``, the same on every retry of the same
    delivery so receivers drop a second copy (``make_msgid`` would make a new one per attempt)."""
    local = "".join(c if c.isalnum() or c in "-._+" else "." for c in msg_id)[:200] or "tickerbell"
    del msg["Message-ID"]
    msg["Message-ID"] = f"<{local}@{mail_domain(public_url)}>"
    return msg


def webhook_id(alert_id: str, channel_id: int) -> str:
    """The Standard Webhooks message id: one per (alert, channel), identical on every retry."""
    return f"{alert_id}.c{channel_id}"


def sign_webhook(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The Standard Webhooks signature (``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body``) by the
    reference library, with a ``whsec_`` (base64) secret; the body is the UTF-8 JSON we send."""
    signature: str = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp_s, tz=timezone.utc),
                                          body.decode("utf-8"))
    return signature


def webhook_headers(secret: str | None, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "Tickerbell-Webhooks/1",
               "webhook-id": msg_id, "webhook-timestamp": str(timestamp_s)}
    if secret:
        headers["webhook-signature"] = sign_webhook(secret, msg_id, timestamp_s, body)
    return headers


def default_webhook_document(ctx: dict[str, Any], test: bool = False) -> dict[str, Any]:
    return {
        "type": "alert.test" if test else f"alert.{ctx['state']}",
        "alert_id": ctx["alert_id"], "rule_id": ctx["rule_id"], "rule": ctx["rule_name"],
        "symbol": ctx["ticker"], "state": ctx["state"], "series": ctx["series"], "op": ctx["op"],
        "condition": ctx["condition"], "conditions": ctx.get("conditions", [ctx["condition"]]),
        "match": ctx.get("match", "all"), "matched": ctx.get("matched", ""),
        "summary": ctx.get("summary", ""), "value": ctx["value"],
        "threshold": ctx["threshold"],
        "time": ctx["time"], "ts_ms": ctx["ts_ms"], "message": ctx["message"], "chart_url": ctx["chart_url"],
    }


def webhook_body(template: str | None, ctx: dict[str, Any], test: bool = False) -> bytes:
    return render_json_body(template, ctx, default_webhook_document(ctx, test))


def headline(ctx: dict[str, Any]) -> str:
    """The first line: the alert's message (the rule's template, or the engine's plain words)."""
    return ctx.get("message") or default_message(ctx)


def subject_line(ctx: dict[str, Any]) -> str:
    """What happened in plain words, whatever the rule's message says (that is the first line)."""
    return f"[Tickerbell] {ctx.get('summary') or default_message(ctx)}"


def _value(ctx: dict[str, Any]) -> str:
    return fmt_value(ctx["value"], ctx["series"], ctx["op"])


def _threshold(ctx: dict[str, Any]) -> str:
    return fmt_value(ctx["threshold"], ctx["series"], ctx["op"])


def fmt_alert_value(alert: Any) -> str:
    """An alert's value formatted for its series (the chart's marker label)."""
    return fmt_value(alert.value, alert.series, alert.op)


def condition_lines(ctx: dict[str, Any]) -> list[tuple[str, str]]:
    """The rule's conditions as (label, text) rows: one ``Condition``, or for a rule of several
    ``Condition: all of`` / ``any of`` with each below it and, for any, the one that ``Matched``."""
    parts = ctx.get("conditions") or [ctx["condition"]]
    if len(parts) < 2:
        return [("Condition", ctx["condition"])]
    rows = [("Condition", f"{ctx.get('match', 'all')} of"), *(("", f"- {p}") for p in parts)]
    return rows + ([("Matched", ctx["matched"])] if ctx.get("matched") else [])


def detail_lines(ctx: dict[str, Any]) -> list[str]:
    lines = [f"Symbol:    {ctx['ticker']}",
             *(f"{(k + ':') if k else '':<10} {v}" for k, v in condition_lines(ctx)),
             f"Value:     {_value(ctx)}", f"Threshold: {_threshold(ctx)}", f"Time:      {ctx['time']}"]
    if ctx.get("chart_url"):
        lines.append(f"Chart:     {ctx['chart_url']}")
    return lines


def plain_message(ctx: dict[str, Any]) -> tuple[str, str]:
    """A chat or push message's title and body (Apprise services): the plain words, then the details."""
    title = one_line(ctx.get("summary") or default_message(ctx), 250)
    return title, "\n".join([headline(ctx), "", *detail_lines(ctx)])


def plain_digest(ctxs: list[dict[str, Any]]) -> tuple[str, str]:
    lines = [digest_line(c) for c in ctxs[:MAX_DIGEST_LINES]]
    more = len(ctxs) - len(lines)
    return f"{len(ctxs)} Tickerbell alerts", "\n".join(lines) + (f"\n... and {more} more" if more > 0 else "")


def slack_payload(ctx: dict[str, Any], image_url: str | None = None) -> dict[str, Any]:
    """Block Kit message with a plain-text fallback in ``text``; with ``image_url`` (the alert's chart at a
    link Slack can fetch: :func:`alerts.chart_image.chart_link`) an ``image`` block shows the chart.
    Slack refuses a whole message whose image it cannot download: pass a link only to a chart that exists."""
    text = headline(ctx)
    fields = [("Symbol", ctx["ticker"]), ("Condition", ctx["condition"]),
              ("Value", _value(ctx)), ("Threshold", _threshold(ctx)),
              ("Time", ctx["time"]), ("Rule", ctx["rule_name"] or str(ctx["rule_id"]))]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": (ctx.get("summary") or default_message(ctx))[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
    ]
    if image_url and len(image_url) <= 3000:  # Slack's limit; a cut link would fail the whole message
        blocks.append({"type": "image", "image_url": image_url,
                       "alt_text": f"{ctx['ticker']} chart of the last bars, the alert marked"[:2000]})
    if ctx.get("chart_url"):
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open chart"}, "url": ctx["chart_url"]}]})
    return {"text": text, "blocks": blocks}


def build_email(ctx: dict[str, Any], mail_from: str, to: str, subject_template: str = "",
                chart_png: bytes | None = None, domain: str = "tickerbell.local") -> EmailMessage:
    """multipart/alternative: plain text and HTML with symbol, condition, value, threshold, time, chart link;
    with ``chart_png`` the HTML part is multipart/related and shows the image inline (``cid:``).
    The subject says what happened in plain words; the first line is the alert's message. The sender
    adds ``Date`` and ``Message-ID`` (:func:`dated`, :func:`identify`), as they depend on the send."""
    subject = render(subject_template, ctx, "") or subject_line(ctx)
    text_lines = [headline(ctx), "", *detail_lines(ctx)]
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (("Symbol", ctx["ticker"]), *condition_lines(ctx), ("Value", _value(ctx)),
                     ("Threshold", _threshold(ctx)), ("Time", ctx["time"]))
    )
    link = (f"<p><a href='{html.escape(ctx['chart_url'], quote=True)}'>Open the {html.escape(ctx['ticker'])} chart</a></p>"
            if ctx.get("chart_url") else "")
    cid = make_msgid("chart", domain=domain) if chart_png else ""
    image = (f"<p><img src='cid:{html.escape(cid[1:-1], quote=True)}' width='560' height='240' "
             f"alt='{html.escape(ctx['ticker'])} chart, the alert marked'></p>" if chart_png else "")
    body_html = (f"<html><body><p>{html.escape(headline(ctx))}</p><table>{rows}</table>{image}{link}"
                 f"<p style='color:#888'>Rule: {html.escape(ctx['rule_name'] or str(ctx['rule_id']))}</p></body></html>")
    msg = EmailMessage()
    msg["Subject"] = one_line(subject)
    msg["From"] = mail_from
    msg["To"] = to
    msg["X-Tickerbell-Alert"] = one_line(str(ctx["alert_id"]))
    msg.set_content("\n".join(text_lines) + "\n")
    msg.add_alternative(body_html, subtype="html")
    if chart_png:
        for part in msg.iter_parts():
            if part.get_content_type() == "text/html":
                part.add_related(chart_png, maintype="image", subtype="png", cid=cid, filename="chart.png")
    return msg


def json_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# --- digests: several alerts of one user on one channel in one message ------------------------

MAX_DIGEST_LINES = 50


def digest_id(alert_ids: list[str], channel_id: int) -> str:
    """A digest's message id: stable for the same group of alerts, so a retried digest keeps it."""
    from events.contract import event_id

    return f"digest:{event_id(*sorted(alert_ids))}.c{channel_id}"


def digest_line(ctx: dict[str, Any]) -> str:
    return f"{ctx['time']}  {ctx.get('summary') or default_message(ctx)}"


def digest_webhook_body(ctxs: list[dict[str, Any]]) -> bytes:
    return json_bytes({"type": "alert.digest", "count": len(ctxs),
                       "alerts": [default_webhook_document(c) for c in ctxs]})


def digest_slack_payload(ctxs: list[dict[str, Any]]) -> dict[str, Any]:
    lines = [digest_line(c) for c in ctxs[:MAX_DIGEST_LINES]]
    more = len(ctxs) - len(lines)
    text = f"{len(ctxs)} Tickerbell alerts\n" + "\n".join(lines) + (f"\n... and {more} more" if more > 0 else "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{len(ctxs)} alerts"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {line}" for line in lines)[:3000]}},
    ]
    return {"text": text[:3000], "blocks": blocks}


def build_digest_email(ctxs: list[dict[str, Any]], mail_from: str, to: str) -> EmailMessage:
    symbols = sorted({c["ticker"] for c in ctxs})
    lines = [digest_line(c) for c in ctxs[:MAX_DIGEST_LINES]]
    more = len(ctxs) - len(lines)
    rows = "".join(
        f"<tr><td>{html.escape(c['time'])}</td><td>{html.escape(c['ticker'])}</td>"
        f"<td>{html.escape(c['condition'])}</td><td>{html.escape(_value(c))}</td>"
        f"<td><a href='{html.escape(c['chart_url'], quote=True)}'>chart</a></td></tr>"
        for c in ctxs[:MAX_DIGEST_LINES])
    msg = EmailMessage()
    msg["Subject"] = one_line(f"[Tickerbell] {len(ctxs)} alerts: {', '.join(symbols[:5])}")
    msg["From"] = mail_from
    msg["To"] = to
    msg.set_content("\n".join(lines) + (f"\n... and {more} more\n" if more > 0 else "\n"))
    msg.add_alternative(
        "<html><body><table><tr><th>Time</th><th>Symbol</th><th>Condition</th><th>Value</th><th></th></tr>"
        f"{rows}</table>{f'<p>... and {more} more</p>' if more > 0 else ''}</body></html>", subtype="html")
    return msg


def channel_disabled_email(channel_name: str, kind: str, reason: str, mail_from: str, to: str,
                           public_url: str) -> EmailMessage:
    """Telling a channel's owner that it was disabled."""
    msg = EmailMessage()
    msg["Subject"] = one_line(f"[Tickerbell] Notification channel '{channel_name}' was disabled")
    msg["From"] = mail_from
    msg["To"] = to
    msg.set_content(f"Your {kind} channel '{one_line(channel_name, 100)}' was disabled: {reason}.\n"
                    f"Fix it and re-enable it at {public_url}/channels\n")
    return msg


def confirmation_email(channel_name: str, address: str, link: str, mail_from: str, expires_h: int) -> EmailMessage:
    """The one mail an unconfirmed address receives: what asked for it and the link that confirms it."""
    msg = EmailMessage()
    msg["Subject"] = "[Tickerbell] Confirm this address for alerts"
    msg["From"] = mail_from
    msg["To"] = address
    name = one_line(channel_name, 100)
    msg.set_content(
        f"Someone added {address} as the Tickerbell notification channel '{name}'.\n\n"
        f"To receive its alerts, open this link within {expires_h} hours and confirm:\n{link}\n\n"
        "If you did not ask for this, ignore this mail: nothing more will be sent to this address.\n")
    msg.add_alternative(
        f"<html><body><p>Someone added {html.escape(address)} as the Tickerbell notification channel "
        f"'{html.escape(name)}'.</p><p><a href='{html.escape(link, quote=True)}'>Confirm this address</a> "
        f"(within {expires_h} hours) to receive its alerts.</p>"
        "<p style='color:#888'>If you did not ask for this, ignore this mail: nothing more will be sent to "
        "this address.</p></body></html>", subtype="html")
    return msg
