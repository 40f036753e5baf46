"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: database, Redis, Kafka reachable)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from web.auth import redis_client
from web.db import get_db
from web.extensions import app_settings

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


def _check(name: str, fn: Callable[[], Any]) -> dict[str, Any]:
    """Whether one dependency answers. The answer names only which one failed: the exception's text
    (hosts, ports, user names, driver versions) is for the log, not for anyone who can reach /readyz."""
    start = time.perf_counter()
    try:
        fn()
        return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 1)}
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness: %s check failed", name, exc_info=True)
        return {"ok": False, "error": "unavailable"}


def _kafka() -> None:
    from events.kafka import admin_client

    admin_client(app_settings()).list_topics(timeout=2)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {
        "database": _check("database", lambda: get_db().execute(text("select 1"))),
        "redis": _check("redis", lambda: redis_client().ping()),
        "kafka": _check("kafka", _kafka),
    }
    ready = all(c["ok"] for c in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), (200 if ready else 503)
