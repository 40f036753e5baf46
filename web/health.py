"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: database, Redis, Kafka reachable)."""

from __future__ import annotations

import time
from typing import Any, Callable

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from web.auth import redis_client
from web.db import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def _check(fn: Callable[[], Any]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        fn()
        return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 1)}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported with its reason
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _kafka() -> None:
    from events.kafka import admin_client

    settings = current_app.extensions["tickerbell_settings"]
    admin_client(settings).list_topics(timeout=2)


@bp.get("/readyz")
def readyz():
    checks = {
        "database": _check(lambda: get_db().execute(text("select 1"))),
        "redis": _check(lambda: redis_client().ping()),
        "kafka": _check(_kafka),
    }
    ready = all(c["ok"] for c in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), (200 if ready else 503)
