"""The JSON REST API (``/api``): everything the pages do, for sessions and bearer tokens.

Session-authenticated writes need the CSRF token (``X-CSRFToken`` header,
from ``GET /api/csrf`` or the page's meta tag); bearer-token requests carry
no ambient credentials and are exempt. Anything that is not the caller's own
answers 404.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, request
from flask_login import current_user

from web.errors import ApiError, ValidationFailed
from web.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # checked below, only for cookie sessions

PUBLIC = {"api.register", "api.login", "api.issue_token", "api.csrf_token", "api.openapi", "api.logout"}
NO_CSRF = {"api.issue_token"}  # no session is read or created: email + password in the body
SAFE = {"GET", "HEAD", "OPTIONS"}


@bp.before_request
def _authenticate() -> None:
    authenticated = current_user.is_authenticated  # runs the session, then the bearer loader
    if request.method not in SAFE and not g.get("token_auth") and request.endpoint not in NO_CSRF:
        csrf.protect()
    if request.endpoint not in PUBLIC and not authenticated:
        raise ApiError(401, "authentication required: log in or send `Authorization: Bearer <token>`")


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None:
        raise ValidationFailed({"body": "send a JSON object with Content-Type: application/json"})
    if not isinstance(data, dict):
        raise ValidationFailed({"body": "send a JSON object"})
    return data


def settings():  # type: ignore[no-untyped-def]
    return current_app.extensions["tickerbell_settings"]


from web.api import account_routes, channel_routes, history_routes, rule_routes, status_routes, watchlist_routes  # noqa: E402,F401
