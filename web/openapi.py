"""The OpenAPI 3.1 document, built from the app's ``/api`` routes plus the schemas below.

The same schemas are the API's first check of a body (:func:`type_errors`): every
field of the wrong JSON type, or an integer out of its range, is refused by name
before a store sees it; the stores then check meaning (a known series, a time zone).
"""

from __future__ import annotations

import math
import re
from typing import Any

from flask import Flask

from events.vocabulary_check import condition_schema, frequency_schema
from web.limits import type_name
from web.store.rules import REPEAT_MAX_S, REPEAT_MIN_S

DB_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}  # a 32-bit signed primary key
EPOCH_MS = {"minimum": 0, "maximum": 4_102_444_800_000}  # up to 2100-01-01
# JavaScript's safe integers: the bound of an integer field that names none (no SQL column overflows)
SAFE_INT = 2**53 - 1

# the condition's schema is the vocabulary's (events/vocabulary.py): its series and operators are the enums
_CONDITION = condition_schema("#/components/schemas/Condition")
_RULE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 200}, "symbol": {"type": ["string", "null"]},
        "watchlist_id": {**DB_ID, "type": ["integer", "null"]}, "condition": {"$ref": "#/components/schemas/Condition"},
        "frequency": frequency_schema(),
        "cooldown_s": {"type": "integer", "minimum": 0, "maximum": 365 * 86_400},
        "pending_s": {"type": "integer", "minimum": 0, "maximum": 86_400}, "recovery": {"type": ["number", "null"]},
        "expires_ms": {"type": ["integer", "null"], **EPOCH_MS}, "enabled": {"type": "boolean"},
        "snoozed_until_ms": {"type": ["integer", "null"], **EPOCH_MS},
        "active_from_min": {"type": ["integer", "null"], "minimum": 0, "maximum": 1440},
        "active_to_min": {"type": ["integer", "null"], "minimum": 0, "maximum": 1440},
        "timezone": {"type": "string", "maxLength": 100},
        "channel_ids": {"type": "array", "items": DB_ID, "maxItems": 100},
        "message": {"type": "string", "maxLength": 4000},
        "notify_on_resolve": {"type": "boolean", "default": False,
                              "description": "also notify the channels when the alert resolves"},
        "repeat_interval_s": {"type": ["integer", "null"], "minimum": REPEAT_MIN_S, "maximum": REPEAT_MAX_S,
                              "description": "remind every this many seconds while the alert stays firing"},
    },
}
_PREVIEW = {"type": "object", "properties": {
    **_RULE["properties"],
    "days": {"type": "integer", "minimum": 1, "maximum": 365, "description": "how far back to evaluate"},
    "id": {**DB_ID, "type": ["integer", "null"], "description": "the rule being edited, if any"},
}}
SCHEMAS: dict[str, Any] = {
    "Condition": _CONDITION,
    "Rule": _RULE,
    "Preview": _PREVIEW,
    "Error": {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "Credentials": {"type": "object", "required": ["email", "password"], "properties": {
        "email": {"type": "string", "format": "email"}, "password": {"type": "string", "minLength": 8},
        "name": {"type": "string"}}},
    "Watchlist": {"type": "object", "properties": {"name": {"type": "string"},
                                                  "symbols": {"type": "array", "items": {"type": "string"}}}},
    "Symbol": {"type": "object", "required": ["symbol"], "properties": {"symbol": {"type": "string"}}},
    "Channel": {"type": "object", "properties": {
        "kind": {"type": "string", "enum": ["email", "slack", "webhook"]}, "name": {"type": "string"},
        "target": {"type": "string"}, "enabled": {"type": "boolean"}, "body_template": {"type": ["string", "null"]}}},
    "Snooze": {"type": "object", "required": ["minutes"], "properties": {
        "minutes": {"type": "integer", "minimum": 0, "maximum": 30 * 24 * 60}}},
    "Token": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    "PasswordChange": {"type": "object", "required": ["current_password", "new_password"], "properties": {
        "current_password": {"type": "string"}, "new_password": {"type": "string", "minLength": 8}}},
}
BODIES = {
    "api.register": "Credentials", "api.login": "Credentials", "api.issue_token": "Credentials",
    "api.create_watchlist": "Watchlist", "api.rename_watchlist": "Watchlist", "api.add_symbol": "Symbol",
    "api.create_rule": "Rule", "api.update_rule": "Rule", "api.preview_rule": "Preview", "api.snooze_rule": "Snooze",
    "api.create_channel": "Channel", "api.update_channel": "Channel", "api.create_token": "Token",
    "api.change_password": "PasswordChange",
}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return SCHEMAS[ref.rsplit("/", 1)[1]] if ref else schema


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if kind == "number":
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and math.isfinite(value))
    return isinstance(value, {"string": str, "array": list, "object": dict}[kind])


def _kinds(schema: dict[str, Any]) -> list[str]:
    schema = _resolve(schema)
    if "oneOf" in schema:
        return [k for branch in schema["oneOf"] for k in _kinds(branch)]
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def type_errors(value: Any, schema: dict[str, Any], path: str = "") -> dict[str, str]:
    """Fields of ``value`` whose JSON type or range the schema refuses: ``{"condition.value": "must be ..."}``.

    Only what the schemas use: ``type``, ``properties``, ``items``, ``oneOf``,
    ``$ref``, ``minimum``/``maximum``, ``maxLength``, ``maxItems``. Fields the
    schema does not name, ``required`` and ``enum`` are the store's to judge (its
    messages say what is allowed).
    """
    schema = _resolve(schema)
    name = path or "body"
    kinds = _kinds(schema)
    matching = [k for k in kinds if _is(value, k)]
    if kinds and not matching:
        wanted = " or ".join(dict.fromkeys("null" if k == "null" else ("an " if k[0] in "aeiou" else "a ") + k
                                           for k in kinds))
        return {name: f"must be {wanted}, got {type_name(value)}"}
    if "oneOf" in schema:
        for branch in schema["oneOf"]:
            if any(_is(value, k) for k in _kinds(branch)):
                return type_errors(value, branch, path)
        return {}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = schema.get("minimum", -SAFE_INT), schema.get("maximum", SAFE_INT)
        if not lo <= value <= hi:
            return {name: f"must be between {lo} and {hi}"}
    if isinstance(value, str) and len(value) > schema.get("maxLength", len(value)):
        return {name: f"at most {schema['maxLength']} characters"}
    errors: dict[str, str] = {}
    if isinstance(value, list) and "items" in schema:
        if len(value) > schema.get("maxItems", len(value)):
            return {name: f"at most {schema['maxItems']} items"}
        for i, item in enumerate(value):
            errors.update(type_errors(item, schema["items"], f"{path}[{i}]"))
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors.update(type_errors(value[key], sub, f"{path}.{key}" if path else key))
    return errors


def body_errors(endpoint: str | None, data: dict[str, Any]) -> dict[str, str]:
    """:func:`type_errors` of a request body against its endpoint's documented schema (none: no check)."""
    name = BODIES.get(endpoint or "")
    return type_errors(data, SCHEMAS[name]) if name else {}


HISTORY_PARAMS = [
    {"name": "symbol", "in": "query", "schema": {"type": "string"}, "description": "comma-separated symbols"},
    {"name": "from", "in": "query", "schema": {"type": "string"}, "description": "date, ISO time or epoch ms"},
    {"name": "to", "in": "query", "schema": {"type": "string"}, "description": "date (inclusive), ISO time or epoch ms"},
    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
]


_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
SCOREBOARD_PARAMS = [{"name": "window", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000},
                      "description": "the newest scored forecasts of each model the live figures cover (500)"}]
SCOREBOARD = {
    "type": "object", "required": ["symbol", "window", "min_n", "alpha", "models"],
    "properties": {
        "symbol": {"type": "string"}, "window": {"type": "integer"},
        "min_n": {"type": "integer", "description": "fewer scores than this are too few to claim skill"},
        "alpha": {"type": "number", "description": "the significance level of every claim (0.05)"},
        "models": {"type": "array", "description": "per model version that forecast the symbol, newest first",
                   "items": {"type": "object", "properties": {
                       "model_version": {"type": "string"}, "bar_seconds": {"type": ["integer", "null"]},
                       "better_than_no_change": {"type": "boolean", "description":
                                                 "live or holdout skill > 0 at p < alpha on at least min_n samples"},
                       "live": {"type": "object", "properties": {
                           "n": {"type": "integer"}, "skill": {"type": ["number", "null"]},
                           "dm_p": {**_RATE, "description": "Diebold-Mariano p, Newey-West variance"},
                           "dm_lag": {"type": ["integer", "null"]}, "coverage": _RATE, "nominal_coverage": _RATE,
                           "coverage_flag": {"type": ["string", "null"], "enum": ["too_narrow", "too_wide", None],
                                             "description": "coverage more than 0.1 off nominal over min_n scores"},
                           "direction": {"type": "object", "properties": {
                               "n": {"type": "integer"}, "accuracy": _RATE, "always_up": _RATE, "last_move": _RATE}},
                           "verdict": {"type": "string", "enum": ["better", "worse", "no_difference", "too_few"]}}},
                       "holdout": {"type": ["object", "null"], "properties": {
                           "skill": {"type": ["number", "null"]}, "p": _RATE, "n": {"type": ["integer", "null"]},
                           "significant": {"type": "boolean"}}}}}},
    },
}


def document(app: Flask) -> dict[str, Any]:
    from web.api import PUBLIC

    paths: dict[str, Any] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        view = app.view_functions[rule.endpoint]
        summary = (view.__doc__ or rule.endpoint.split(".", 1)[1].replace("_", " ")).strip().splitlines()[0]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {
                "operationId": rule.endpoint.split(".", 1)[1] + ("" if method in ("GET", "POST", "DELETE") else "_" + method.lower()),
                "summary": summary,
                "parameters": [{"name": a, "in": "path", "required": True,
                                "schema": {"type": "integer" if "int:" + a in rule.rule else "string"}}
                               for a in rule.arguments],
                "responses": {
                    "200": {"description": "OK"},
                    "4XX": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            if method == "GET" and rule.endpoint in ("api.list_alerts", "api.list_deliveries", "api.overview_json",
                                                     "api.symbol_bars", "api.symbol_predictions") or "export" in rule.endpoint:
                op["parameters"] += HISTORY_PARAMS
            if rule.endpoint == "api.symbol_scoreboard":
                op["parameters"] += SCOREBOARD_PARAMS
                op["responses"]["200"] = {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Scoreboard"}}}}
            if rule.endpoint in BODIES and method in ("POST", "PUT", "PATCH"):
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{BODIES[rule.endpoint]}"}}}}
            if rule.endpoint in PUBLIC:
                op["security"] = []
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tickerbell API", "version": "1",
                 "description": "Watchlists, alert rules, channels and history. Authenticate with a session cookie "
                                "(writes need the X-CSRFToken header from GET /api/csrf) or `Authorization: Bearer <token>` "
                                "(POST /api/auth/token). Objects of other users answer 404."},
        "servers": [{"url": "/"}],
        "components": {"schemas": {**SCHEMAS, "Scoreboard": SCOREBOARD}, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "security": [{"bearer": []}, {"session": []}],
        "paths": dict(sorted(paths.items())),
    }
