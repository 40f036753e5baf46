"""Rules: every change goes through ``events.outbox`` so the engine hears of it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from events import contract, models
from events.outbox import delete_rule as outbox_delete_rule
from events.outbox import rule_event, rule_symbols, save_rule
from events.settings import Settings
from events.vocabulary import Condition
from events.vocabulary_check import rule_problems
from web.store.errors import Invalid, LimitExceeded, NotFound, StoreError
from web.limits import ApiLimits
from web.store.conditions import FREQUENCIES, describe, validate_condition
from web.store.names import NO_CONTROL, has_control
from web.store.watchlists import get_watchlist, normalise_symbol

EDITABLE = ("name", "symbol", "watchlist_id", "condition", "frequency", "cooldown_s", "pending_s", "recovery",
            "expires_ms", "enabled", "snoozed_until_ms", "active_from_min", "active_to_min", "timezone",
            "channel_ids", "message", "notify_on_resolve", "repeat_interval_s")
#: a reminder while an alert stays firing: from a minute to a week (the contract's bounds)
REPEAT_MIN_S, REPEAT_MAX_S = 60, 7 * 86_400


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:  # SQLite hands back naive UTC datetimes
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _ms(dt: datetime | None) -> int | None:
    dt = _aware(dt)
    return int(dt.timestamp() * 1000) if dt else None


def _from_ms(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms is not None else None


def _iso(dt: datetime | None) -> str | None:
    aware = _aware(dt)
    return aware.isoformat() if aware is not None else None


def rule_state(rule: models.Rule, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    if not rule.enabled:
        return "disabled"
    expires = _aware(rule.expires_at)
    if expires is not None and expires <= now:
        return "expired"
    snoozed = _aware(rule.snoozed_until)
    if snoozed is not None and snoozed > now:
        return "snoozed"
    return "active"


def rule_json(session: Session, rule: models.Rule) -> dict[str, Any]:
    return {
        "id": rule.id, "name": rule.name, "symbol": rule.symbol, "watchlist_id": rule.watchlist_id,
        "symbols": rule_symbols(session, rule), "condition": rule.condition, "description": describe(rule.condition),
        "frequency": rule.frequency, "cooldown_s": rule.cooldown_s, "pending_s": rule.pending_s,
        "recovery": rule.recovery, "expires_ms": _ms(rule.expires_at), "enabled": rule.enabled,
        "snoozed_until_ms": _ms(rule.snoozed_until), "active_from_min": rule.active_from_min,
        "active_to_min": rule.active_to_min, "timezone": rule.timezone,
        "channel_ids": sorted(c.id for c in rule.channels), "message": rule.message,
        "notify_on_resolve": bool(rule.notify_on_resolve), "repeat_interval_s": rule.repeat_interval_s,
        "version": rule.version, "state": rule_state(rule), "updated_at": _iso(rule.updated_at),
    }


def list_rules(session: Session, user_id: int, symbol: str | None = None) -> list[models.Rule]:
    q = select(models.Rule).where(models.Rule.user_id == user_id).order_by(models.Rule.id)
    rules = list(session.scalars(q))
    if symbol:
        rules = [r for r in rules if symbol in rule_symbols(session, r)]
    return rules


def get_rule(session: Session, user_id: int, rule_id: int) -> models.Rule:
    rule = session.get(models.Rule, rule_id)
    if rule is None or rule.user_id != user_id:
        raise NotFound("rule")
    return rule


def _int_field(data: dict[str, Any], name: str, lo: int, hi: int, errors: dict[str, str]) -> int | None:
    raw = data.get(name)
    if raw is None or raw == "":
        return None
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        value = int(raw)
    except (TypeError, ValueError):
        errors[name] = f"must be a whole number, got {raw!r}"
        return None
    if not lo <= value <= hi:
        errors[name] = f"must be between {lo} and {hi}"
        return None
    return value


def validate_rule(session: Session, user_id: int, data: Any, current: models.Rule | None = None) -> dict[str, Any]:
    """Check a full or partial rule payload; return the clean values; raise 422 with every field's message.

    With ``current`` (an edit), missing fields keep their current values.
    """
    if not isinstance(data, dict):
        raise Invalid({"body": "send a JSON object"})
    unknown = sorted(set(data) - set(EDITABLE) - {"id", "version", "state", "symbols", "description", "updated_at"})
    if unknown:
        raise Invalid({unknown[0]: f"unknown field (known: {', '.join(EDITABLE)})"})
    base: dict[str, Any] = rule_json(session, current) if current is not None else {}
    merged = {**base, **data}
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}

    name = str(merged.get("name") or "").strip()
    if len(name) > 200:
        errors["name"] = "at most 200 characters"
    elif has_control(name):
        errors["name"] = NO_CONTROL
    clean["name"] = name

    symbol = merged.get("symbol") or None
    watchlist_id = merged.get("watchlist_id") or None
    if "symbol" in data and data["symbol"] and "watchlist_id" not in data:
        watchlist_id = None
    if "watchlist_id" in data and data["watchlist_id"] and "symbol" not in data:
        symbol = None
    if (symbol is None) == (watchlist_id is None):
        errors["symbol"] = "choose one symbol, or a watchlist (the rule then watches each of its symbols)"
    elif symbol is not None:
        try:
            symbol = normalise_symbol(symbol)
        except Invalid as exc:
            errors.update(exc.fields)
    else:
        try:
            wl = get_watchlist(session, user_id, int(watchlist_id))  # type: ignore[arg-type] # ValueError below
            if not wl.symbols:
                errors["watchlist_id"] = f"{wl.name} has no symbols yet; add one first"
            watchlist_id = wl.id
        except (StoreError, ValueError, TypeError):
            errors["watchlist_id"] = "no such watchlist of yours"
    clean["symbol"], clean["watchlist_id"] = symbol, watchlist_id

    condition, cond_errors = validate_condition(merged.get("condition"))  # the engine's own check
    errors.update(cond_errors)
    clean["condition"] = condition

    frequency = merged.get("frequency") or "once_per_bar"
    if frequency not in FREQUENCIES:
        errors["frequency"] = f"choose one of: {', '.join(FREQUENCIES)}"
    clean["frequency"] = frequency
    clean["cooldown_s"] = _int_field(merged, "cooldown_s", 0, 365 * 86_400, errors) or 0
    clean["pending_s"] = _int_field(merged, "pending_s", 0, 86_400, errors) or 0
    recovery = merged.get("recovery")
    if recovery in (None, ""):
        clean["recovery"] = None
    else:
        try:
            clean["recovery"] = float(recovery)
        except (TypeError, ValueError):
            errors["recovery"] = "must be a number (the level at which a firing alert resolves)"
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    expires_ms = _int_field(merged, "expires_ms", 946_684_800_000, 4_102_444_800_000, errors)
    if expires_ms is not None and "expires_ms" in data and expires_ms <= now_ms:
        errors["expires_ms"] = "must be in the future"
    clean["expires_ms"] = expires_ms
    snoozed = _int_field(merged, "snoozed_until_ms", 946_684_800_000, 4_102_444_800_000, errors)
    clean["snoozed_until_ms"] = snoozed
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        errors["enabled"] = "must be true or false"
    clean["enabled"] = bool(enabled)
    a_from = _int_field(merged, "active_from_min", 0, 1440, errors)
    a_to = _int_field(merged, "active_to_min", 0, 1440, errors)
    clean["active_from_min"], clean["active_to_min"] = a_from, a_to
    tz = str(merged.get("timezone") or "America/New_York")
    clean["timezone"] = tz
    # what the rule's settings mean next to its condition: the same check the engine's CLI runs
    found = rule_problems(None if cond_errors else msgspec.convert(condition, Condition),
                          recovery=clean.get("recovery"), timezone=tz, active_from_min=a_from, active_to_min=a_to)
    for field, text in found.items():
        errors.setdefault(field, text)
    message = str(merged.get("message") or "")
    if len(message) > 4000:
        errors["message"] = "at most 4000 characters"
    elif message:
        from alerts.templates import TemplateProblem, sample_context, validate_template

        try:
            validate_template(message, sample_context())
        except TemplateProblem as exc:
            errors["message"] = str(exc)
    clean["message"] = message
    resolve = merged.get("notify_on_resolve", False)
    if not isinstance(resolve, bool):
        errors["notify_on_resolve"] = "must be true or false"
    clean["notify_on_resolve"] = resolve is True
    clean["repeat_interval_s"] = _int_field(merged, "repeat_interval_s", REPEAT_MIN_S, REPEAT_MAX_S, errors)

    channel_ids = merged.get("channel_ids") or []
    if not isinstance(channel_ids, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in channel_ids):
        errors["channel_ids"] = "must be a list of channel ids"
        channel_ids = []
    channels = []
    for cid in sorted(set(channel_ids)):
        ch = session.get(models.Channel, cid)
        if ch is None or ch.user_id != user_id:
            errors["channel_ids"] = f"no channel {cid} of yours"
        else:
            channels.append(ch)
    clean["channels"] = channels
    if errors:
        raise Invalid(errors)
    return clean


def _apply(rule: models.Rule, clean: dict[str, Any]) -> None:
    for name in ("name", "symbol", "watchlist_id", "condition", "frequency", "cooldown_s", "pending_s", "recovery",
                 "enabled", "active_from_min", "active_to_min", "timezone", "message", "notify_on_resolve",
                 "repeat_interval_s"):
        if getattr(rule, name) != clean[name]:
            setattr(rule, name, clean[name])
    if _ms(rule.expires_at) != clean["expires_ms"]:
        rule.expires_at = _from_ms(clean["expires_ms"])
    if _ms(rule.snoozed_until) != clean["snoozed_until_ms"]:
        rule.snoozed_until = _from_ms(clean["snoozed_until_ms"])
    if sorted(c.id for c in rule.channels) != sorted(c.id for c in clean["channels"]):
        rule.channels = clean["channels"]


def create_rule(session: Session, settings: Settings, user_id: int, data: Any,
                limits: ApiLimits = ApiLimits()) -> models.Rule:
    count = session.scalar(select(func.count()).select_from(models.Rule).where(models.Rule.user_id == user_id))
    if (count or 0) >= limits.rules_per_user:
        raise LimitExceeded("rules_per_user", limits.rules_per_user, "rules per account")
    clean = validate_rule(session, user_id, data)
    rule = models.Rule(user_id=user_id, version=1, channels=[])
    _apply(rule, clean)
    save_rule(session, rule, settings)
    session.commit()
    return rule


def update_rule(session: Session, settings: Settings, user_id: int, rule_id: int, data: Any) -> models.Rule:
    rule = get_rule(session, user_id, rule_id)
    clean = validate_rule(session, user_id, data, current=rule)
    _apply(rule, clean)
    if session.is_modified(rule):
        save_rule(session, rule, settings)
    session.commit()
    return rule


def set_enabled(session: Session, settings: Settings, user_id: int, rule_id: int, enabled: bool) -> models.Rule:
    return update_rule(session, settings, user_id, rule_id, {"enabled": enabled})


def snooze(session: Session, settings: Settings, user_id: int, rule_id: int, minutes: Any) -> models.Rule:
    """Silence a rule for ``minutes`` (0 ends a snooze)."""
    try:
        minutes = int(minutes)
        if isinstance(minutes, bool) or not 0 <= minutes <= 30 * 24 * 60:
            raise ValueError
    except (TypeError, ValueError):
        raise Invalid({"minutes": "snooze for 0 (un-snooze) to 43200 minutes (30 days)"}) from None
    until = None
    if minutes:
        until = int((datetime.now(timezone.utc) + timedelta(minutes=minutes)).timestamp() * 1000)
    return update_rule(session, settings, user_id, rule_id, {"snoozed_until_ms": until})


def delete_rule(session: Session, settings: Settings, user_id: int, rule_id: int) -> None:
    rule = get_rule(session, user_id, rule_id)
    outbox_delete_rule(session, rule, settings)
    session.commit()


def preview_bars(days: int, bar_seconds: int, symbols: int) -> int:
    """Bars a preview of ``days`` over ``symbols`` symbols evaluates at most (what it holds in memory)."""
    return days * (86_400 // max(1, min(bar_seconds, 86_400))) * symbols


DEFAULT_PREVIEW_DAYS = 30


def preview(session: Session, user_id: int, data: Any, days: Any = None, rule_id: int | None = None,
            limits: ApiLimits = ApiLimits(), bar_seconds: int = 60) -> dict[str, Any]:
    """Where the rule would have fired over the stored history (nothing is saved).

    Refused (422, naming ``preview_bars``) when ``days`` x bars per day x the
    rule's symbols passes the cap: the preview holds all those bars at once.
    Without ``days`` it looks back 30 days, or as far as the cap allows (short bars).
    """
    asked = days is not None
    try:
        days = int(days) if asked else DEFAULT_PREVIEW_DAYS
        if not 1 <= days <= 365:
            raise ValueError
    except (TypeError, ValueError):
        raise Invalid({"days": "look back 1 to 365 days"}) from None
    current = get_rule(session, user_id, rule_id) if rule_id else None
    clean = validate_rule(session, user_id, data, current=current)
    draft = models.Rule(user_id=user_id, id=rule_id or 1, version=(current.version if current else 1), channels=[])
    _apply(draft, clean)
    draft.updated_at = datetime.now(timezone.utc)
    event = rule_event(session, draft)  # the draft is never added to the session
    if not asked:
        per_day = max(1, preview_bars(1, bar_seconds, len(event.symbols)))
        days = max(1, min(days, limits.preview_bars // per_day))
    needed = preview_bars(days, bar_seconds, len(event.symbols))
    if needed > limits.preview_bars:
        session.rollback()
        most = max(1, limits.preview_bars // max(1, preview_bars(1, bar_seconds, len(event.symbols))))
        raise Invalid({"days": f"a preview reads at most {limits.preview_bars} bars (preview_bars); "
                                        f"{days} days of {len(event.symbols)} symbol(s) are {needed}: "
                                        f"look back at most {most} days"})
    from alerts.conditions import ConditionError
    from alerts.preview import preview_rule

    try:
        fired = preview_rule(session, event, days=days)
    except ConditionError as exc:
        raise Invalid({"condition": str(exc)}) from None
    finally:
        session.rollback()  # a preview never changes anything
    return {"count": sum(1 for a in fired if a.get("state", "firing") == "firing"), "days": days,
            "alerts": fired, "symbols": event.symbols}

