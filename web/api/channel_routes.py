"""Notification channels: CRUD, secret rotation, confirmation, test send (queued), delivery log."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from events import models
from web.api import body, bp, settings
from web.auth import test_send_limited, uid
from web.db import get_db
from web.errors import not_found
from web.filters import parse_range
from web.limits import channel_create_limited
from web.store import channels as ch_store
from web.store import history


@bp.record_once
def _read_notify_queue(state: BlueprintSetupState) -> None:
    """The workers' queue, read once when the app is made (``ALERTS_QUEUE`` in the app's config, else
    the workers' own setting): a bad setting stops the app at start, not a request later."""
    from alerts.retry import load_notify_config

    state.app.extensions["tickerbell_alerts_queue"] = (state.app.config.get("ALERTS_QUEUE")
                                                       or load_notify_config().queue)


def enqueue(name: str, args: list[Any]) -> None:
    """Hand a task to the notification workers; the Celery client is made once per app."""
    sender = current_app.extensions.get("tickerbell_alerts_sender")
    if sender is None:
        from alerts.enqueue import task_sender

        queue = current_app.extensions["tickerbell_alerts_queue"]
        sender = current_app.extensions["tickerbell_alerts_sender"] = task_sender(settings().redis_url, queue)
    sender(name, args)


@bp.get("/channels/kinds")
def channel_kinds() -> Response:
    """What the channel form offers: each kind with its help, and the Apprise services with their URL forms."""
    from alerts.apprise_channel import SERVICES, URL_FORMS

    return jsonify({"kinds": ch_store.KINDS, "services": sorted(set(SERVICES.values())), "url_forms": URL_FORMS})


@bp.get("/channels")
def list_channels() -> Response:
    return jsonify([ch_store.channel_json(c) for c in ch_store.list_channels(get_db(), uid())])


@bp.post("/channels")
@channel_create_limited
def create_channel() -> tuple[Response, int]:
    ch = ch_store.create_channel(get_db(), settings(), uid(), body(), enqueue)
    return jsonify(ch_store.channel_json(ch, reveal_secret=True)), 201


@bp.get("/channels/<int:channel_id>")
def get_channel(channel_id: int) -> Response:
    return jsonify(ch_store.channel_json(ch_store.get_channel(get_db(), uid(), channel_id)))


@bp.patch("/channels/<int:channel_id>")
def update_channel(channel_id: int) -> Response:
    return jsonify(ch_store.channel_json(ch_store.update_channel(get_db(), settings(), uid(), channel_id, body(),
                                                                 enqueue)))


@bp.delete("/channels/<int:channel_id>")
def delete_channel(channel_id: int) -> tuple[str, int]:
    ch_store.delete_channel(get_db(), settings(), uid(), channel_id)
    return "", 204


@bp.post("/channels/<int:channel_id>/rotate-secret")
def rotate_secret(channel_id: int) -> Response:
    """A new signing secret, shown in this answer only."""
    return jsonify(ch_store.channel_json(ch_store.rotate_secret(get_db(), uid(), channel_id), reveal_secret=True))


@bp.post("/channels/<int:channel_id>/test")
@test_send_limited
def test_channel(channel_id: int) -> tuple[Response, int]:
    """202: a worker sends the test message; poll ``poll`` (the delivery and its attempt log)."""
    return jsonify(ch_store.test_send(get_db(), settings(), uid(), channel_id, enqueue)), 202


@bp.post("/channels/<int:channel_id>/confirmation")
@test_send_limited  # mail on demand, like a test-send: one count for both
def resend_confirmation(channel_id: int) -> tuple[Response, int]:
    """Mail an unconfirmed address its confirmation link again."""
    ch = ch_store.resend_confirmation(get_db(), uid(), channel_id, enqueue)
    return jsonify(ch_store.channel_json(ch)), 202


@bp.get("/channels/<int:channel_id>/deliveries/<int:delivery_id>")
def channel_delivery(channel_id: int, delivery_id: int) -> Response:
    session = get_db()
    ch = ch_store.get_channel(session, uid(), channel_id)
    d = session.get(models.Delivery, delivery_id)
    if d is None or d.channel_id != ch.id:
        raise not_found("delivery")
    return jsonify(history.delivery_json(d, ch))


@bp.get("/channels/<int:channel_id>/deliveries")
def channel_deliveries(channel_id: int) -> Response:
    session = get_db()
    ch_store.get_channel(session, uid(), channel_id)
    rng = parse_range(request.args, default_days=30, default_limit=200)
    return jsonify([history.delivery_json(d, c) for d, c in history.deliveries(session, uid(), rng, channel_id=channel_id)])
