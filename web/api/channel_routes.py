"""Notification channels: CRUD, secret rotation, test send, delivery log."""

from __future__ import annotations

from flask import jsonify, request

from web.api import body, bp, settings
from web.auth import test_send_limited, uid
from web.db import get_db
from web.filters import parse_range
from web.store import channels as ch_store
from web.store import history


@bp.get("/channels")
def list_channels():
    return jsonify([ch_store.channel_json(c) for c in ch_store.list_channels(get_db(), uid())])


@bp.post("/channels")
def create_channel():
    ch = ch_store.create_channel(get_db(), settings(), uid(), body())
    return jsonify(ch_store.channel_json(ch, reveal_secret=True)), 201


@bp.get("/channels/<int:channel_id>")
def get_channel(channel_id: int):
    return jsonify(ch_store.channel_json(ch_store.get_channel(get_db(), uid(), channel_id)))


@bp.patch("/channels/<int:channel_id>")
def update_channel(channel_id: int):
    return jsonify(ch_store.channel_json(ch_store.update_channel(get_db(), settings(), uid(), channel_id, body())))


@bp.delete("/channels/<int:channel_id>")
def delete_channel(channel_id: int):
    ch_store.delete_channel(get_db(), settings(), uid(), channel_id)
    return "", 204


@bp.post("/channels/<int:channel_id>/rotate-secret")
def rotate_secret(channel_id: int):
    """A new signing secret, shown in this answer only."""
    return jsonify(ch_store.channel_json(ch_store.rotate_secret(get_db(), uid(), channel_id), reveal_secret=True))


@bp.post("/channels/<int:channel_id>/test")
@test_send_limited
def test_channel(channel_id: int):
    return jsonify(ch_store.test_send(get_db(), settings(), uid(), channel_id))


@bp.get("/channels/<int:channel_id>/deliveries")
def channel_deliveries(channel_id: int):
    session = get_db()
    ch_store.get_channel(session, uid(), channel_id)
    rng = parse_range(request.args, default_days=30, default_limit=200)
    return jsonify([history.delivery_json(d, c) for d, c in history.deliveries(session, uid(), rng, channel_id=channel_id)])
