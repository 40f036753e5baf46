"""The status numbers and the OpenAPI document."""

from __future__ import annotations

from flask import Response, current_app, jsonify
from flask_login import current_user

from web import status
from web.api import bp, settings
from web.auth import redis_client
from web.db import get_db
from web.errors import ApiError


@bp.get("/status")
def status_json() -> Response:
    if not status.may_view(current_user):
        raise ApiError(403, "the status numbers are for administrators")
    drift = status.forecast_drift(get_db())
    return jsonify({**status.collect(settings(), redis_client(), current_app.config["REDIS_PREFIX"]),
                    "forecast_drift": drift})


@bp.get("/openapi.json")
def openapi() -> Response:
    from web.openapi import document

    return jsonify(document(current_app))
