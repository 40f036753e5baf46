"""An alert's chart as a PNG at a signed, expiring link, for chat services that show images by URL.

``GET /charts/<alert id>.png?exp=<unix s>&sig=<signature>`` (the link of
:func:`alerts.chart_image.chart_link`, put in Slack messages by the worker). No login: Slack's
servers fetch it. The signature, checked before anything is read, is the only key: a bad or
expired one is 403, a signed id the database does not know is 404. The picture is the one the
email shows (:func:`alerts.senders.chart_for`, from the alert as delivered and the bars
projection) and says nothing about its owner beyond the symbol, the bars and the alert's value.
"""

from __future__ import annotations

import time

import msgspec
from flask import Blueprint, Response, abort, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from events import models
from events.contract import Alert
from web.db import get_db
from web.extensions import app_settings

bp = Blueprint("charts", __name__)

MAX_ALERT_ID_CHARS = 100          # the column's width
MAX_PNG_BYTES = 512 * 1024        # a chart is some 20 KB; anything larger is not served
MAX_AGE_S = 24 * 3600             # how long a cache (Slack's image proxy) may keep it


@bp.get("/charts/<alert_id>.png")
def chart_png(alert_id: str) -> Response:
    from alerts.chart_image import check_chart_link
    from alerts.senders import chart_for

    settings = app_settings()
    now_s = time.time()
    exp, sig = request.args.get("exp", ""), request.args.get("sig", "")
    if len(alert_id) > MAX_ALERT_ID_CHARS or check_chart_link(settings.secret_key.get(), alert_id, exp, sig, now_s):
        abort(403)
    alert = _alert(get_db(), alert_id)
    if alert is None:
        abort(404)
    png = chart_for(get_db(), alert, settings.bar_seconds)
    if png is None or len(png) > MAX_PNG_BYTES:
        abort(404)
    response = Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = f"public, max-age={max(0, min(MAX_AGE_S, int(exp) - int(now_s)))}"
    response.headers["Content-Disposition"] = "inline; filename=chart.png"
    return response


def _alert(session: Session, alert_id: str) -> Alert | None:
    """The alert as its deliveries carry it (what the email was drawn from), else as the history has it."""
    payload = session.scalar(select(models.Delivery.payload).where(models.Delivery.alert_id == alert_id).limit(1))
    if payload:
        try:
            return msgspec.convert(payload, Alert)
        except msgspec.ValidationError:
            pass
    row = session.get(models.AlertRecord, alert_id)
    if row is None:
        return None
    evidence = {"price": row.value} if row.series == "price" and row.value is not None else {}
    return Alert(id=row.id, ts=row.ts_ms, rule_id=row.rule_id, rule_version=row.rule_version, user_id=row.user_id,
                 state=row.state, symbol=row.symbol, trigger_event_id=row.trigger_event_id,  # type: ignore[arg-type]
                 series=row.series, op=row.op, value=row.value, threshold=row.threshold, evidence=evidence)
