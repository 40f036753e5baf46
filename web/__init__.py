"""Tickerbell web app: accounts, watchlists, rules, channels, live charts, REST API.

``create_app(config=None)`` builds the Flask app; ``config`` may carry a
``SETTINGS`` (:class:`events.settings.Settings`), ``REDIS_PREFIX`` (keys of
the rate limits and status samples) and ``SOCKETIO_CHANNEL`` (the Redis
message-queue channel, unique per test). Everything else is Flask config
(``RATELIMIT_STORAGE_URI="memory://"`` for a unit test that wants no Redis).
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any, Mapping

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from events.settings import Settings, load_settings
from web.extensions import csrf, limiter, login_manager, socketio

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
    https = settings.public_url.startswith("https://")
    if settings.trust_proxy_hops:
        # remote_addr, scheme and port from the X-Forwarded-* the trusted proxies appended (Heroku's
        # router: 1); any hops a client wrote itself are further left and ignored
        hops = settings.trust_proxy_hops
        # Flask's documented way to add WSGI middleware; mypy refuses any assignment to a method
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_port=hops)  # type: ignore[method-assign]
    # ids in URLs beyond what the database stores are simply not found (not an overflow error)
    app.url_map.converters["int"] = DatabaseId
    app.config.update(
        SECRET_KEY=settings.secret_key.get(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
        # "keep me logged in": two weeks (the user id in it carries its issue time, checked too),
        # never sent by scripts or to other sites, revoked by the user's nonce (web.auth)
        REMEMBER_COOKIE_DURATION=timedelta(days=14),
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=https,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        # one deployment's keys and channel: KAFKA_TOPIC_PREFIX namespaces them like its topics
        REDIS_PREFIX=f"tickerbell:{settings.kafka_topic_prefix}",
        SOCKETIO_CHANNEL=settings.topic("tickerbell-socketio"),
        RATELIMIT_STORAGE_URI=settings.redis_url,
        # failed logins (web.auth.login_limited): "N per window" tiers, several make a back-off
        LOGIN_MAX_FAILURES=5,
        LOGIN_LIMIT_CLIENT="20/minute;100/hour;300/day",
        LOGIN_LIMIT_ACCOUNT="20/hour;50/day",
        SIGNUP_LIMIT="5/hour;20/day",
        TEST_SEND_LIMIT="5/minute;30/hour",
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
    )
    app.config.update(config)
    app.config.setdefault("LOGIN_LIMIT_ACCOUNT_CLIENT", _account_client_limit(app.config["LOGIN_MAX_FAILURES"]))
    app.extensions["tickerbell_settings"] = settings

    from web import db

    db.init_app(app, settings)
    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)
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

    from web import accounts, api, charts, errors, health, pages, realtime

    errors.init_app(app)
    from flask_limiter.errors import RateLimitExceeded

    from web.auth import rate_limited

    app.register_error_handler(RateLimitExceeded, rate_limited)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(charts.bp)
    realtime.register(socketio)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(_security_headers)
    return app


def _account_client_limit(per_minute: int) -> str:
    return f"{per_minute}/minute;{per_minute * 4}/hour;{per_minute * 10}/day"


# Pages load scripts, styles and sockets from this origin only, are never framed, and submit
# forms only here. An inline <script> runs only with this response's nonce
# (<script nonce="{{ csp_nonce() }}">), so markup that slipped into a page cannot run script.
CSP = "; ".join([
    "default-src 'self'", "script-src 'self' 'nonce-{nonce}'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:", "connect-src 'self' ws: wss:", "font-src 'self' data:", "object-src 'none'",
    "base-uri 'self'", "form-action 'self'", "frame-ancestors 'none'",
])


def csp_nonce() -> str:
    """This response's script nonce (templates call it on each inline <script>)."""
    nonce = g.get("csp_nonce")
    if not isinstance(nonce, str):
        nonce = g.csp_nonce = secrets.token_urlsafe(16)
    return nonce


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", CSP.format(nonce=csp_nonce()))
    if request.is_secure:
        # HTTPS only from now on for a year (behind Heroku, is_secure comes from ProxyFix's X-Forwarded-Proto)
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response

