"""The status numbers and the OpenAPI document."""

from __future__ import annotations

from flask import current_app, jsonify

from web import status
from web.api import bp, settings
from web.auth import redis_client


@bp.get("/status")
def status_json():
    return jsonify(status.collect(settings(), redis_client(), current_app.config["REDIS_PREFIX"]))


@bp.get("/openapi.json")
def openapi():
    from web.openapi import document

    return jsonify(document(current_app))
