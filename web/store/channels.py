"""Notification channels: email, Slack incoming webhook, generic (signed) webhook."""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from events import models
from events.outbox import save_rule
from events.settings import Settings
from web.errors import ApiError, ValidationFailed, not_found
from web.store.users import EMAIL

log = logging.getLogger(__name__)
KINDS = {
    "email": "an email address; alerts arrive as HTML and plain text",
    "slack": "a Slack incoming-webhook URL (https://hooks.slack.com/services/...)",
    "webhook": "any HTTPS endpoint; we POST JSON signed with Standard Webhooks headers",
}


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def channel_json(ch: models.Channel, *, reveal_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": ch.id, "kind": ch.kind, "name": ch.name, "target": ch.target, "enabled": ch.enabled,
        "body_template": ch.body_template, "disabled_reason": ch.disabled_reason,
        "failing_since": ch.failing_since.isoformat() if ch.failing_since else None,
        "created_at": ch.created_at.isoformat(),
        "secret_hint": f"whsec_…{ch.secret[-4:]}" if ch.secret else None,
    }
    if reveal_secret and ch.secret:
        out["secret"] = ch.secret
    return out


def list_channels(session: Session, user_id: int) -> list[models.Channel]:
    return list(session.scalars(select(models.Channel).where(models.Channel.user_id == user_id).order_by(models.Channel.id)))


def get_channel(session: Session, user_id: int, channel_id: int) -> models.Channel:
    ch = session.get(models.Channel, channel_id)
    if ch is None or ch.user_id != user_id:
        raise not_found("channel")
    return ch


def check_url(url: str, settings: Settings, kind: str) -> None:
    """Refuse URLs that are malformed or reach private, loopback or link-local addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed({"target": "must be an http(s):// URL"})
    if kind == "slack" and parts.scheme != "https":
        raise ValidationFailed({"target": "Slack webhook URLs use https://"})
    try:
        from alerts.netguard import UnsafeURL
        from alerts.netguard import check_url as netguard_check
    except ImportError:  # the guard lives with the senders; without it only private hosts are refused by name
        log.warning("alerts.netguard is not installed: URL %s checked by scheme only", parts.hostname)
        if parts.hostname in ("localhost", "127.0.0.1", "::1", "0.0.0.0") and not settings.allow_private_webhooks:
            raise ValidationFailed({"target": "must not point at this machine"}) from None
        return
    try:
        netguard_check(url, allow_private=settings.allow_private_webhooks)
    except UnsafeURL as exc:
        raise ValidationFailed({"target": f"not allowed: {exc}"}) from None


def _validate(settings: Settings, kind: Any, data: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if kind not in KINDS:
        raise ValidationFailed({"kind": f"choose one of: {', '.join(KINDS)}"})
    if "name" in data:
        name = str(data.get("name") or "").strip()
        if not 1 <= len(name) <= 100:
            errors["name"] = "give the channel a name (1-100 characters)"
        clean["name"] = name
    if "target" in data:
        target = str(data.get("target") or "").strip()
        if kind == "email":
            if not EMAIL.match(target) or len(target) > 254:
                errors["target"] = "enter a valid email address"
        elif len(target) > 2000:
            errors["target"] = "at most 2000 characters"
        else:
            try:
                check_url(target, settings, kind)
            except ValidationFailed as exc:
                errors.update(exc.fields)
        clean["target"] = target
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            errors["enabled"] = "must be true or false"
        clean["enabled"] = bool(data["enabled"])
    if "body_template" in data:
        tpl = data.get("body_template") or None
        if tpl is not None and (not isinstance(tpl, str) or len(tpl) > 20_000):
            errors["body_template"] = "a text template of at most 20000 characters"
        clean["body_template"] = tpl
    if errors:
        raise ValidationFailed(errors)
    return clean


def create_channel(session: Session, settings: Settings, user_id: int, data: Any) -> models.Channel:
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "send a JSON object"})
    kind = data.get("kind")
    missing = {f: "is required" for f in ("name", "target") if not data.get(f)}
    if missing and kind in KINDS:
        raise ValidationFailed(missing)
    clean = _validate(settings, kind, {"enabled": True, **data})
    ch = models.Channel(user_id=user_id, kind=kind, secret=new_secret() if kind == "webhook" else None, **clean)
    session.add(ch)
    session.commit()
    return ch


def update_channel(session: Session, settings: Settings, user_id: int, channel_id: int, data: Any) -> models.Channel:
    ch = get_channel(session, user_id, channel_id)
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "send a JSON object"})
    if "kind" in data and data["kind"] != ch.kind:
        raise ValidationFailed({"kind": "cannot change; create a new channel instead"})
    clean = _validate(settings, ch.kind, {k: v for k, v in data.items() if k != "kind"})
    for name, value in clean.items():
        setattr(ch, name, value)
    if clean.get("enabled"):
        ch.disabled_reason = None
        ch.failing_since = None
    session.commit()
    return ch


def rotate_secret(session: Session, user_id: int, channel_id: int) -> models.Channel:
    ch = get_channel(session, user_id, channel_id)
    if ch.kind != "webhook":
        raise ApiError(409, "only webhook channels have a signing secret")
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


def test_send(session: Session, settings: Settings, user_id: int, channel_id: int) -> dict[str, Any]:
    ch = get_channel(session, user_id, channel_id)
    try:
        from alerts.notify import test_send as notify_test_send
    except ImportError:
        raise ApiError(503, "test sends are not available: the alerts package does not provide alerts.notify yet") from None
    result = notify_test_send(session, ch.id, settings)
    return {"ok": bool(result.get("ok")), "status_code": result.get("status_code"), "error": result.get("error")}
