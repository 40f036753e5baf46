"""Rule validation beyond the contract's types, and the rule CLI's database side.

:func:`validate_rule` is what the engine checks before accepting a rule; the
web form and the CLI call it before saving, so a user hears about a
nonsensical rule at once instead of a dead letter later.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.conditions import ConditionError, compile_condition
from alerts.conditions import DOWN_OPS, UP_OPS
from events import contract, models
from events.outbox import delete_rule, rule_event, save_rule
from events.settings import Settings

__all__ = ["RuleError", "create_rule", "describe", "list_rules", "remove_rule", "validate_rule"]


class RuleError(ValueError):
    """A rule that cannot be saved, with a message for the user."""


def validate_rule(rule: contract.Rule) -> None:
    """Raise :class:`RuleError` if the rule is well-typed but makes no sense."""
    try:
        compile_condition(rule.condition)
    except ConditionError as exc:
        raise RuleError(str(exc)) from None
    try:
        ZoneInfo(rule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"unknown time zone {rule.timezone!r}") from None
    if (rule.active_from_min is None) != (rule.active_to_min is None):
        raise RuleError("active hours need both a start and an end")
    cond = rule.condition
    if rule.recovery is not None:
        if cond.op not in UP_OPS | DOWN_OPS or cond.value is None:
            raise RuleError("a recovery threshold needs a constant `value` with greater_than, less_than, "
                            "crossing_up or crossing_down")
        if cond.op in UP_OPS and rule.recovery > cond.value:
            raise RuleError(f"recovery {rule.recovery} must be at or below the threshold {cond.value} for {cond.op}")
        if cond.op in DOWN_OPS and rule.recovery < cond.value:
            raise RuleError(f"recovery {rule.recovery} must be at or above the threshold {cond.value} for {cond.op}")


def parse_condition(data: dict[str, Any]) -> contract.Condition:
    try:
        return msgspec.convert(data, contract.Condition)
    except msgspec.ValidationError as exc:
        raise RuleError(f"invalid condition: {exc}") from None


def create_rule(session: Session, settings: Settings, *, user_id: int, condition: dict[str, Any],
                symbol: str | None = None, watchlist_id: int | None = None, channel_ids: list[int] | None = None,
                **fields: Any) -> contract.Rule:
    """Insert a rule (and its outbox row) after validating it; commits. Raises :class:`RuleError`."""
    if (symbol is None) == (watchlist_id is None):
        raise RuleError("give exactly one of a symbol or a watchlist")
    if session.get(models.User, user_id) is None:
        raise RuleError(f"no user {user_id}")
    parse_condition(condition)
    channels = []
    for cid in channel_ids or []:
        ch = session.get(models.Channel, cid)
        if ch is None or ch.user_id != user_id:
            raise RuleError(f"no channel {cid} of user {user_id}")
        channels.append(ch)
    row = models.Rule(user_id=user_id, symbol=symbol.upper() if symbol else None, watchlist_id=watchlist_id,
                      condition=condition, channels=channels, version=1, **fields)
    session.add(row)
    session.flush()
    try:
        event = rule_event(session, row)
    except msgspec.ValidationError as exc:
        session.rollback()
        raise RuleError(f"invalid rule: {exc}") from None
    try:
        validate_rule(event)
    except RuleError:
        session.rollback()
        raise
    event = save_rule(session, row, settings)
    session.commit()
    return event


def list_rules(session: Session, user_id: int | None = None) -> list[contract.Rule]:
    query = select(models.Rule).order_by(models.Rule.id)
    if user_id is not None:
        query = query.where(models.Rule.user_id == user_id)
    out = []
    for row in session.scalars(query):
        try:
            out.append(rule_event(session, row))
        except msgspec.ValidationError:
            continue
    return out


def remove_rule(session: Session, settings: Settings, rule_id: int) -> None:
    row = session.get(models.Rule, rule_id)
    if row is None:
        raise RuleError(f"no rule {rule_id}")
    delete_rule(session, row, settings)
    session.commit()


def describe(rule: contract.Rule) -> str:
    c = rule.condition
    if c.lower is not None:
        rhs = f"[{c.lower:g}, {c.upper:g}]"
    elif c.other is not None:
        rhs = c.other
    else:
        rhs = f"{c.value:g}" if c.value is not None else "?"
    window = f" within {c.window_bars} bars" if c.window_bars else f" within {c.window_s}s" if c.window_s else ""
    text = f"{c.series} {c.op} {rhs}{window}"
    if c.also is not None:
        text += " and " + describe(msgspec.structs.replace(rule, condition=c.also))
    return text


def utc_from_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
