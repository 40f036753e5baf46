"""The read side of the web app in threads, as its processes run it: the projector and the bridge."""

from __future__ import annotations

import threading
import uuid

from flask import Flask

from events.db import session_factory
from events.kafka import ShutdownFlag
from events.settings import Settings
from web.bridge import run_bridge
from web.projector import run_projector


def start_read_side(app: Flask, settings: Settings, shutdown: ShutdownFlag,
                    bridge_offset_reset: str = "earliest") -> list[threading.Thread]:
    """Start the projector and the bridge for ``app`` (its Redis prefix and Socket.IO channel)."""
    prefix = app.config["REDIS_PREFIX"]
    threads = [
        threading.Thread(target=run_projector, args=(settings, session_factory(settings), shutdown),
                         kwargs={"group_id": f"proj-{uuid.uuid4().hex[:8]}", "redis_prefix": prefix}, daemon=True),
        threading.Thread(target=run_bridge, args=(settings, shutdown),
                         kwargs={"channel": app.config["SOCKETIO_CHANNEL"], "group_id": f"bridge-{uuid.uuid4().hex[:8]}",
                                 "offset_reset": bridge_offset_reset, "redis_prefix": prefix}, daemon=True),
    ]
    for t in threads:
        t.start()
    return threads
