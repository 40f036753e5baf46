"""Tickerbell web app: accounts, watchlists, rules, channels, live charts, REST API.

``create_app(config=None)`` builds the Flask app; ``config`` may carry a
``SETTINGS`` (:class:`events.settings.Settings`), ``REDIS_PREFIX`` (keys of
the login limiter and status samples) and ``SOCKETIO_CHANNEL`` (the Redis
message-queue channel, unique per test). Everything else is Flask config.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from events.settings import Settings, load_settings
from web.extensions import csrf, login_manager, socketio

log = logging.getLogger(__name__)


class DatabaseId(IntegerConverter):
    """``<int:...>`` URL parts limited to the range of a 32-bit signed integer primary key."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:  # noqa: A002 (werkzeug's name)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or load_settings()
    app = Flask(__name__)
    # ids in URLs beyond what the database stores are simply not found (not an overflow error)
    app.url_map.converters["int"] = DatabaseId
    app.config.update(
        SECRET_KEY=settings.secret_key.get(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        # one deployment's keys and channel: KAFKA_TOPIC_PREFIX namespaces them like its topics
        REDIS_PREFIX=f"tickerbell:{settings.kafka_topic_prefix}",
        SOCKETIO_CHANNEL=settings.topic("tickerbell-socketio"),
        LOGIN_MAX_FAILURES=5,
        LOGIN_LOCKOUT_S=900,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
    )
    app.config.update(config)
    app.extensions["tickerbell_settings"] = settings

    from web import db

    db.init_app(app, settings)
    csrf.init_app(app)
    login_manager.init_app(app)
    socketio.init_app(
        app,
        async_mode="threading",
        message_queue=settings.redis_url,
        channel=app.config["SOCKETIO_CHANNEL"],
        # None: only the page's own origin (Host header) may open a socket; add others by config
        cors_allowed_origins=app.config.get("SOCKETIO_ORIGINS"),
        logger=False,
        engineio_logger=False,
    )

    from web import accounts, api, errors, health, pages, realtime

    errors.init_app(app)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    realtime.register(socketio)
    return app


def settings_of(app: Flask) -> Settings:
    return app.extensions["tickerbell_settings"]
