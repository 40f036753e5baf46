"""Notification channels: email, Slack incoming webhook, Slack bot, generic (signed) webhook, Apprise.

An Apprise channel's URL carries the service's tokens: it is stored, shown back only masked
(``display_url``) and never logged. A Slack bot channel keeps its ``xoxb-`` token as the
channel's secret (shown as a hint only) and the Slack channel as its target.

An email channel starts unconfirmed and receives nothing but one confirmation mail
until someone who reads the address follows its signed link (:mod:`alerts.confirmation`);
changing its address starts over. Webhook and Slack channels are confirmed when
created (their URL's owner already chose to receive them). Test messages and
confirmation mails are sent by the workers: the functions here write what to send
and hand ids to an ``enqueue(task_name, args)`` the caller supplies.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from events import models
from events.outbox import save_rule
from events.settings import Settings
from web.store.errors import BadLink, Conflict, Invalid, NotFound, Unavailable
from web.store.names import NO_CONTROL, has_control
from web.store.users import EMAIL

log = logging.getLogger(__name__)
Enqueue = Callable[[str, list[Any]], None]
MAX_UNCONFIRMED = 3  # email channels waiting for confirmation per user: each one mailed an address
KINDS = {
    "email": "an email address; alerts arrive as HTML and plain text",
    "slack": "a Slack incoming-webhook URL (https://hooks.slack.com/services/...)",
    "slack_bot": "a Slack channel id or #name; the bot token (xoxb-..., scope chat:write) goes in 'token'",
    "webhook": "any HTTPS endpoint; we POST JSON signed with Standard Webhooks headers",
    "apprise": "an Apprise URL: tgram://, discord://, msteams://, ntfy://, pover:// and the others listed",
}
SLACK_CHANNEL = re.compile(r"^[#@]?[A-Za-z0-9._-]{1,80}$")
MAX_TOKEN_CHARS = 200  # the secret column's width


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def channel_json(ch: models.Channel, *, reveal_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": ch.id, "kind": ch.kind, "name": ch.name, "target": ch.target, "enabled": ch.enabled,
        "body_template": ch.body_template, "disabled_reason": ch.disabled_reason,
        "failing_since": ch.failing_since.isoformat() if ch.failing_since else None,
        "created_at": ch.created_at.isoformat(),
        "confirmed": ch.confirmed_at is not None,
        "confirmed_at": ch.confirmed_at.isoformat() if ch.confirmed_at else None,
        "secret_hint": _hint(ch),
    }
    if ch.kind == "apprise":
        out["target"] = display_url(ch.target)
        out["service"] = _service(ch.target)
    if reveal_secret and ch.secret and ch.kind == "webhook":
        out["secret"] = ch.secret
    return out


def _hint(ch: models.Channel) -> str | None:
    if not ch.secret:
        return None
    return f"{'xoxb-' if ch.kind == 'slack_bot' else 'whsec_'}…{ch.secret[-4:]}"


def display_url(url: str) -> str:
    """An Apprise URL with its tokens masked: what the owner is shown of it."""
    from alerts.apprise_channel import AppriseURLError, parse_target

    try:
        return parse_target(url).display_url
    except AppriseURLError:
        return url.split("://", 1)[0] + "://…" if "://" in url else "…"


def _service(url: str) -> str | None:
    from alerts.apprise_channel import SERVICES

    return SERVICES.get(url.split("://", 1)[0].lower()) if "://" in url else None


def list_channels(session: Session, user_id: int) -> list[models.Channel]:
    return list(session.scalars(select(models.Channel).where(models.Channel.user_id == user_id).order_by(models.Channel.id)))


def get_channel(session: Session, user_id: int, channel_id: int) -> models.Channel:
    ch = session.get(models.Channel, channel_id)
    if ch is None or ch.user_id != user_id:
        raise NotFound("channel")
    return ch


def check_url(url: str, settings: Settings, kind: str) -> None:
    """Refuse URLs that are malformed or reach private, loopback or link-local addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid({"target": "must be an http(s):// URL"})
    if kind == "slack" and parts.scheme != "https":
        raise Invalid({"target": "Slack webhook URLs use https://"})
    from alerts.netguard import UnsafeURL
    from alerts.netguard import check_url as netguard_check

    try:
        netguard_check(url, allow_private=settings.allow_private_webhooks)
    except UnsafeURL as exc:
        raise Invalid({"target": f"not allowed: {exc}"}) from None


def _validate(settings: Settings, kind: Any, data: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if kind not in KINDS:
        raise Invalid({"kind": f"choose one of: {', '.join(KINDS)}"})
    if "name" in data:
        name = str(data.get("name") or "").strip()
        if not 1 <= len(name) <= 100:
            errors["name"] = "give the channel a name (1-100 characters)"
        elif has_control(name):
            errors["name"] = NO_CONTROL
        clean["name"] = name
    if "target" in data:
        target = str(data.get("target") or "").strip()
        if kind == "email":
            if not EMAIL.match(target) or len(target) > 254:
                errors["target"] = "enter a valid email address"
        elif len(target) > 2000:
            errors["target"] = "at most 2000 characters"
        elif kind == "slack_bot":
            if not SLACK_CHANNEL.match(target):
                errors["target"] = "a Slack channel id (C0123ABCD) or name (#alerts)"
        elif kind == "apprise":
            from alerts.apprise_channel import AppriseURLError, parse_target

            try:
                parse_target(target)  # the address guard runs at every send, where DNS answers count
            except AppriseURLError as exc:
                errors["target"] = str(exc)
        else:
            try:
                check_url(target, settings, kind)
            except Invalid as exc:
                errors.update(exc.fields)
        clean["target"] = target
    if "token" in data:
        from alerts.slack_bot import valid_token

        token = data.get("token")
        if kind != "slack_bot":
            errors["token"] = "only Slack bot channels have a token"
        elif not isinstance(token, str) or not valid_token(token.strip()) or len(token.strip()) > MAX_TOKEN_CHARS:
            errors["token"] = "a Slack bot token: xoxb-... (from your Slack app's OAuth & Permissions page)"
        else:
            clean["secret"] = token.strip()
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            errors["enabled"] = "must be true or false"
        clean["enabled"] = bool(data["enabled"])
    if "body_template" in data:
        tpl = data.get("body_template") or None
        if tpl is not None and (not isinstance(tpl, str) or len(tpl) > 20_000):
            errors["body_template"] = "a text template of at most 20000 characters"
        elif tpl is not None:
            from alerts.templates import TemplateProblem, sample_context, validate_template

            try:
                validate_template(tpl, sample_context())
            except TemplateProblem as exc:
                errors["body_template"] = str(exc)
        clean["body_template"] = tpl
    if errors:
        raise Invalid(errors)
    return clean


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ask_confirmation(ch: models.Channel, enqueue: Enqueue | None) -> None:
    """Queue the confirmation mail; a broker outage is logged (the owner can ask again)."""
    if enqueue is None:
        return
    try:
        enqueue("alerts.confirm_channel", [ch.id])
    except Exception as exc:  # noqa: BLE001 - the channel is saved; the mail can be asked for again
        log.warning("channel %s: could not queue its confirmation mail: %s", ch.id, exc)


def create_channel(session: Session, settings: Settings, user_id: int, data: Any,
                   enqueue: Enqueue | None = None) -> models.Channel:
    """Save a channel; a new email address is mailed its confirmation link (through ``enqueue``)."""
    if not isinstance(data, dict):
        raise Invalid({"body": "send a JSON object"})
    kind = data.get("kind")
    required = ("name", "target", "token") if kind == "slack_bot" else ("name", "target")
    missing = {f: "is required" for f in required if not data.get(f)}
    if missing and kind in KINDS:
        raise Invalid(missing)
    clean = _validate(settings, kind, {"enabled": True, **data})
    if kind == "email" and _unconfirmed(session, user_id) >= MAX_UNCONFIRMED:
        raise Conflict(f"you have {MAX_UNCONFIRMED} email channels waiting for confirmation: confirm or "
                            "delete one first", {"target": "too many unconfirmed addresses"})
    secret = clean.pop("secret", None) or (new_secret() if kind == "webhook" else None)
    ch = models.Channel(user_id=user_id, kind=kind, secret=secret,
                        confirmed_at=None if kind == "email" else _now(), **clean)
    session.add(ch)
    session.commit()
    if kind == "email":
        _ask_confirmation(ch, enqueue)
    return ch


def _unconfirmed(session: Session, user_id: int) -> int:
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(models.Channel).where(
        models.Channel.user_id == user_id, models.Channel.kind == "email",
        models.Channel.confirmed_at.is_(None))) or 0


def update_channel(session: Session, settings: Settings, user_id: int, channel_id: int, data: Any,
                   enqueue: Enqueue | None = None) -> models.Channel:
    ch = get_channel(session, user_id, channel_id)
    if not isinstance(data, dict):
        raise Invalid({"body": "send a JSON object"})
    if "kind" in data and data["kind"] != ch.kind:
        raise Invalid({"kind": "cannot change; create a new channel instead"})
    changes = {k: v for k, v in data.items() if k != "kind"}
    if ch.kind == "apprise" and changes.get("target") == display_url(ch.target):
        del changes["target"]  # the masked URL the form showed, sent back unchanged: keep the real one
    clean = _validate(settings, ch.kind, changes)
    readdressed = ch.kind == "email" and "target" in clean and clean["target"] != ch.target
    for name, value in clean.items():
        setattr(ch, name, value)
    if clean.get("enabled"):
        ch.disabled_reason = None
        ch.failing_since = None
    if readdressed:  # a new address proves itself like a new channel
        ch.confirmed_at = None
    session.commit()
    if readdressed:
        _ask_confirmation(ch, enqueue)
    return ch


def resend_confirmation(session: Session, user_id: int, channel_id: int, enqueue: Enqueue) -> models.Channel:
    ch = get_channel(session, user_id, channel_id)
    if ch.kind != "email":
        raise Conflict("only email channels are confirmed by mail")
    if ch.confirmed_at is not None:
        raise Conflict("this address is already confirmed")
    try:
        enqueue("alerts.confirm_channel", [ch.id])
    except Exception:  # noqa: BLE001
        log.exception("channel %s: could not queue its confirmation mail", ch.id)
        raise Unavailable("the notification workers cannot be reached right now; try again shortly") from None
    return ch


def confirm(session: Session, settings: Settings, token: str) -> models.Channel:
    """Confirm the channel a link names, for whoever holds the link (see web.pages.confirm_channel for why)."""
    from alerts.confirmation import ConfirmationInvalid, read_confirmation_token

    try:
        confirmation = read_confirmation_token(settings.secret_key.get(), token)
    except ConfirmationInvalid as exc:
        raise BadLink(str(exc)) from None
    ch = session.get(models.Channel, confirmation.channel_id)
    if ch is None or ch.kind != "email" or ch.target != confirmation.address:
        raise BadLink("this confirmation link is for an address that is no longer in use")
    if ch.confirmed_at is None:
        ch.confirmed_at = _now()
        session.commit()
    return ch


def rotate_secret(session: Session, user_id: int, channel_id: int) -> models.Channel:
    ch = get_channel(session, user_id, channel_id)
    if ch.kind != "webhook":
        raise Conflict("only webhook channels have a signing secret")
    ch.secret = new_secret()
    session.commit()
    return ch


def delete_channel(session: Session, settings: Settings, user_id: int, channel_id: int) -> None:
    """Delete a channel; rules that used it are re-announced without it."""
    ch = get_channel(session, user_id, channel_id)
    rules = session.scalars(
        select(models.Rule).join(models.RuleChannel).where(models.RuleChannel.channel_id == ch.id)
    ).all()
    for rule in rules:
        rule.channels = [c for c in rule.channels if c.id != ch.id]
        save_rule(session, rule, settings)
    session.delete(ch)
    session.commit()


def test_send(session: Session, settings: Settings, user_id: int, channel_id: int,
              enqueue: Enqueue) -> dict[str, Any]:
    """Queue a test message on the channel: a delivery row a worker sends once (no retries), whose
    status and attempt log the caller polls. Refused (409) while the channel may not receive."""
    from alerts.notify import create_test_delivery, refusal

    ch = get_channel(session, user_id, channel_id)
    refused = refusal(ch)
    if refused is not None:
        raise Conflict(refused.error or "this channel may not receive messages now")
    delivery_id = create_test_delivery(session, ch)
    session.commit()
    queued = True
    try:
        enqueue("alerts.deliver", [delivery_id])
    except Exception as exc:  # noqa: BLE001 - the row waits; the workers' sweep sends it when they are back
        log.warning("test delivery %s: could not queue it (%s); the sweep will", delivery_id, exc)
        queued = False
    return {"delivery_id": delivery_id, "channel_id": ch.id, "status": "pending", "queued": queued,
            "poll": f"/api/channels/{ch.id}/deliveries/{delivery_id}"}
