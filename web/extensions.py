"""Extensions created once at import and bound to an app with ``init_app``."""

from __future__ import annotations

from typing import cast

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_socketio import SocketIO
from flask_wtf.csrf import CSRFProtect

from events.settings import Settings

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "accounts.login"
login_manager.login_message_category = "info"
socketio = SocketIO()
# Storage (RATELIMIT_STORAGE_URI: the Redis URL) comes from the app's config. Only the limits
# declared on views apply (web.auth.login_limited and friends); their key functions carry the
# app's REDIS_PREFIX, so deployments sharing a Redis (and tests) count apart. Moving windows: no
# burst of twice the limit at a window's edge. When Redis is down the limits keep holding per
# process in memory rather than failing the request.
limiter = Limiter(get_remote_address, strategy="moving-window", headers_enabled=True,
                  in_memory_fallback_enabled=True)


def app_settings() -> Settings:
    """The current app's settings (``create_app`` stores them; call inside an app context)."""
    return cast(Settings, current_app.extensions["tickerbell_settings"])
