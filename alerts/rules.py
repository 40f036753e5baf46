"""The rule CLI's side (``python -m alerts rules ...``): rules checked by the one vocabulary.

:func:`validate_rule` is what the engine's vocabulary says about a rule event
(:func:`events.vocabulary_check.problems` and :func:`~events.vocabulary_check.rule_problems`,
the same checks the web runs). :func:`create_rule` saves through the API's checks: the body's
types and ranges (:func:`web.openapi.type_errors`), then the web store's own ``create_rule``, so a
rule made here passes exactly the checks of the form and the API (owned channels, a watchlist with
symbols, names, message templates, the all-clear and reminder settings, the per-account cap).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.templates import describe as condition_words
from events import contract, models
from events.outbox import delete_rule, rule_event
from events.settings import Settings
from events.vocabulary_check import problems, rule_problems

__all__ = ["RuleError", "create_rule", "describe", "list_rules", "remove_rule", "validate_rule"]


class RuleError(ValueError):
    """A rule that cannot be saved, with a message for the user."""


def _sentence(errors: dict[str, str]) -> str:
    return "; ".join(f"{field}: {message}" if field else message for field, message in errors.items())


def validate_rule(rule: contract.Rule) -> None:
    """Raise :class:`RuleError` if the rule is well-typed but makes no sense."""
    found = problems(rule.condition) or rule_problems(
        rule.condition, recovery=rule.recovery, timezone=rule.timezone, active_from_min=rule.active_from_min,
        active_to_min=rule.active_to_min)
    if found:
        raise RuleError(_sentence(found))


def create_rule(session: Session, settings: Settings, *, user_id: int, condition: dict[str, Any],
                symbol: str | None = None, watchlist_id: int | None = None, channel_ids: list[int] | None = None,
                expires_at: datetime | None = None, **fields: Any) -> contract.Rule:
    """Create a rule as the web does (:func:`web.store.rules.create_rule`); commits. Raises
    :class:`RuleError` with every field's message."""
    from web.openapi import SCHEMAS, type_errors
    from web.store.errors import Invalid, StoreError
    from web.store.rules import create_rule as store_create_rule

    if session.get(models.User, user_id) is None:
        raise RuleError(f"no user {user_id}")
    data: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    data.update(condition=condition, symbol=symbol, watchlist_id=watchlist_id, channel_ids=channel_ids or [])
    if expires_at is not None:
        data["expires_ms"] = int(expires_at.timestamp() * 1000)
    wrong = type_errors(data, SCHEMAS["Rule"])  # the API's first check of a body, then its store's
    if wrong:
        raise RuleError(_sentence(wrong))
    try:
        row = store_create_rule(session, settings, user_id, data)
    except Invalid as exc:
        session.rollback()
        raise RuleError(_sentence(exc.fields) or exc.message) from None
    except StoreError as exc:
        session.rollback()
        raise RuleError(exc.message) from None
    return rule_event(session, row)


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
    """The rule's condition in the words of its alerts (one wording: alerts/templates.describe)."""
    return condition_words(rule.condition)


def utc_from_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
