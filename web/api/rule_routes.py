"""Rules: CRUD, enable/disable, snooze, preview, the rule's alerts, and the form's catalogue."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from events import models
from web.api import body, bp, settings
from web.auth import uid
from web.db import get_db
from web.filters import parse_range
from web.limits import api_limits
from web.store import conditions, history
from web.store import rules as rules_store


def _one(rule: models.Rule) -> dict[str, Any]:
    return rules_store.rule_json(get_db(), rule)


@bp.get("/rules/catalog")
def rule_catalog() -> ResponseReturnValue:
    """What a condition may say: series, operators, frequencies and presets, each explained."""
    cat = conditions.catalog()
    # operator_groups: the older name of "groups", kept for clients that read it
    return jsonify(**cat, operator_groups=cat["groups"])


@bp.get("/rules")
def list_rules() -> ResponseReturnValue:
    symbol = (request.args.get("symbol") or "").upper() or None
    return jsonify([_one(r) for r in rules_store.list_rules(get_db(), uid(), symbol)])


@bp.post("/rules")
def create_rule() -> ResponseReturnValue:
    rule = rules_store.create_rule(get_db(), settings(), uid(), body(), api_limits())
    return jsonify(_one(rule)), 201


@bp.post("/rules/preview")
def preview_rule() -> ResponseReturnValue:
    data = body()
    days = data.pop("days", None)  # None: 30 days, or as far back as the preview cap allows
    rule_id = data.pop("id", None)
    return jsonify(rules_store.preview(get_db(), uid(), data, days=days, rule_id=rule_id if isinstance(rule_id, int) else None,
                                       limits=api_limits(), bar_seconds=settings().bar_seconds))


@bp.get("/rules/<int:rule_id>")
def get_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(_one(rules_store.get_rule(get_db(), uid(), rule_id)))


@bp.route("/rules/<int:rule_id>", methods=["PUT", "PATCH"])
def update_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(_one(rules_store.update_rule(get_db(), settings(), uid(), rule_id, body())))


@bp.delete("/rules/<int:rule_id>")
def delete_rule(rule_id: int) -> ResponseReturnValue:
    rules_store.delete_rule(get_db(), settings(), uid(), rule_id)
    return "", 204


@bp.post("/rules/<int:rule_id>/enable")
def enable_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(_one(rules_store.set_enabled(get_db(), settings(), uid(), rule_id, True)))


@bp.post("/rules/<int:rule_id>/disable")
def disable_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(_one(rules_store.set_enabled(get_db(), settings(), uid(), rule_id, False)))


@bp.post("/rules/<int:rule_id>/snooze")
def snooze_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(_one(rules_store.snooze(get_db(), settings(), uid(), rule_id, body().get("minutes"))))


@bp.get("/rules/<int:rule_id>/alerts")
def rule_alerts(rule_id: int) -> ResponseReturnValue:
    session = get_db()
    rules_store.get_rule(session, uid(), rule_id)
    rng = parse_range(request.args, default_days=30, default_limit=100)
    names = history.rule_names(session, uid())
    return jsonify([history.alert_json(a, names) for a in history.alerts(session, uid(), rng, rule_id=rule_id)])
