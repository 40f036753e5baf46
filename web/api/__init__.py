"""The JSON REST API (``/api``): everything the pages do, for sessions and bearer tokens.

Session-authenticated writes need the CSRF token (``X-CSRFToken`` header,
from ``GET /api/csrf`` or the page's meta tag); bearer-token requests carry
no ambient credentials and are exempt. Anything that is not the caller's own
answers 404.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from events.settings import Settings
from web.errors import ApiError, ValidationFailed
from web.extensions import app_settings, csrf
from web.limits import api_limits, json_depth

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # checked below, only for cookie sessions

PUBLIC = {"api.register", "api.login", "api.issue_token", "api.csrf_token", "api.openapi", "api.logout"}
NO_CSRF = {"api.issue_token"}  # no session is read or created: email + password in the body
SAFE = {"GET", "HEAD", "OPTIONS"}


@bp.before_request
def _authenticate() -> None:
    _bound_body()
    authenticated = current_user.is_authenticated  # runs the session, then the bearer loader
    if request.method not in SAFE and not g.get("token_auth") and request.endpoint not in NO_CSRF:
        csrf.protect()
    if request.endpoint not in PUBLIC and not authenticated:
        raise ApiError(401, "authentication required: log in or send `Authorization: Bearer <token>`")


def _bound_body() -> None:
    """Refuse a body too large (413) or nested too deeply (400) before anything parses it.

    Python's JSON parser recurses per bracket: 100 000 of them are a RecursionError
    (a 500), and a merely deep body makes every later walk over it deep too.
    """
    limits = api_limits()
    request.max_content_length = limits.body_bytes  # werkzeug answers 413 when the body is read
    if request.method in SAFE or not request.is_json:
        return
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {limits.body_bytes} bytes (body_bytes)",
                       {"body": f"at most {limits.body_bytes} bytes"}) from None
    if json_depth(raw, limits.json_depth + 1) > limits.json_depth:
        raise ApiError(400, f"the JSON body nests deeper than {limits.json_depth} levels (json_depth)",
                       {"body": f"at most {limits.json_depth} levels of nesting"})


def body() -> dict[str, Any]:
    """The request's JSON object, each field of a documented type (else 422 naming the field)."""
    from web.openapi import body_errors

    data = request.get_json(silent=True)
    if data is None:
        raise ValidationFailed({"body": "send a JSON object with Content-Type: application/json"})
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "send a JSON object"})
    errors = body_errors(request.endpoint, data)
    if errors:
        raise ValidationFailed(errors)
    return data


def settings() -> Settings:
    return app_settings()


from web.api import account_routes, channel_routes, history_routes, rule_routes, status_routes, watchlist_routes  # noqa: E402,F401
from web.api import scoreboard_routes  # noqa: E402,F401
