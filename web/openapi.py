"""The OpenAPI 3.1 document, built from the app's ``/api`` routes plus the schemas below."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from web.store.conditions import FREQUENCIES, OPERATORS, SERIES

_CONDITION = {
    "type": "object", "required": ["series", "op"],
    "properties": {
        "series": {"type": "string", "enum": list(SERIES)}, "op": {"type": "string", "enum": list(OPERATORS)},
        "value": {"type": ["number", "null"]}, "other": {"type": ["string", "null"], "enum": [*SERIES, None]},
        "lower": {"type": ["number", "null"]}, "upper": {"type": ["number", "null"]},
        "window_bars": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000},
        "window_s": {"type": ["integer", "null"], "minimum": 1, "maximum": 2678400},
        "also": {"oneOf": [{"$ref": "#/components/schemas/Condition"}, {"type": "null"}]},
    },
}
_RULE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 200}, "symbol": {"type": ["string", "null"]},
        "watchlist_id": {"type": ["integer", "null"]}, "condition": {"$ref": "#/components/schemas/Condition"},
        "frequency": {"type": "string", "enum": list(FREQUENCIES)}, "cooldown_s": {"type": "integer", "minimum": 0},
        "pending_s": {"type": "integer", "minimum": 0}, "recovery": {"type": ["number", "null"]},
        "expires_ms": {"type": ["integer", "null"]}, "enabled": {"type": "boolean"},
        "snoozed_until_ms": {"type": ["integer", "null"]},
        "active_from_min": {"type": ["integer", "null"]}, "active_to_min": {"type": ["integer", "null"]},
        "timezone": {"type": "string"}, "channel_ids": {"type": "array", "items": {"type": "integer"}},
        "message": {"type": "string", "maxLength": 4000},
    },
}
SCHEMAS: dict[str, Any] = {
    "Condition": _CONDITION,
    "Rule": _RULE,
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
    "Snooze": {"type": "object", "required": ["minutes"], "properties": {"minutes": {"type": "integer"}}},
    "Token": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
}
BODIES = {
    "api.register": "Credentials", "api.login": "Credentials", "api.issue_token": "Credentials",
    "api.create_watchlist": "Watchlist", "api.rename_watchlist": "Watchlist", "api.add_symbol": "Symbol",
    "api.create_rule": "Rule", "api.update_rule": "Rule", "api.preview_rule": "Rule", "api.snooze_rule": "Snooze",
    "api.create_channel": "Channel", "api.update_channel": "Channel", "api.create_token": "Token",
}
HISTORY_PARAMS = [
    {"name": "symbol", "in": "query", "schema": {"type": "string"}, "description": "comma-separated symbols"},
    {"name": "from", "in": "query", "schema": {"type": "string"}, "description": "date, ISO time or epoch ms"},
    {"name": "to", "in": "query", "schema": {"type": "string"}, "description": "date (inclusive), ISO time or epoch ms"},
    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
]


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
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "security": [{"bearer": []}, {"session": []}],
        "paths": dict(sorted(paths.items())),
    }
