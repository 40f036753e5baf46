"""Who is asking: session users (Flask-Login), bearer tokens (ApiToken), and the login limiter."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone
from typing import Any

import redis
from flask import current_app, g, request
from flask_login import current_user
from sqlalchemy import select

from events import models
from web.db import get_db
from web.errors import ApiError
from web.extensions import login_manager

TOKEN_PREFIX = "tb_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def user_for_token(session: Any, token: str) -> models.User | None:
    row = session.scalar(select(models.ApiToken).where(models.ApiToken.token_hash == hash_token(token)))
    if row is None:
        return None
    user = session.get(models.User, row.user_id)
    if user is None or not user.is_active:
        return None
    row.last_used_at = datetime.now(timezone.utc)
    session.commit()
    return user


class LoginUser:
    """The Flask-Login view of a :class:`events.models.User` (ids only, no ORM object kept)."""

    def __init__(self, user: models.User) -> None:
        self.id = user.id
        self.email = user.email
        self.is_admin = user.is_admin
        self.is_active = user.is_active
        self.is_authenticated = True
        self.is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)


@login_manager.user_loader
def _load_user(user_id: str) -> LoginUser | None:
    if not user_id.isdigit():
        return None
    user = get_db().get(models.User, int(user_id))
    return LoginUser(user) if user is not None and user.is_active else None


@login_manager.request_loader
def _load_from_bearer(req: Any) -> LoginUser | None:
    header = req.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    user = user_for_token(get_db(), header[7:].strip())
    if user is None:
        return None
    g.token_auth = True
    return LoginUser(user)


@login_manager.unauthorized_handler
def _unauthorized():
    from flask import redirect, url_for

    from web.errors import wants_json

    if wants_json():
        raise ApiError(401, "authentication required: log in or send `Authorization: Bearer <token>`")
    return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))


def uid() -> int:
    """The current user's id (call only behind ``login_required``)."""
    return int(current_user.id)


# --- login limiter ---------------------------------------------------------------------


class LoginLimiter:
    """Failed logins counted per (client IP, email) and per IP in Redis, with a lockout.

    ``MAX`` failures within the window lock that pair out for the rest of the
    window; an IP gets ``MAX * 10`` across all emails (password spraying).
    A success clears the pair's counter.
    """

    def __init__(self, client: redis.Redis, prefix: str, max_failures: int, window_s: int) -> None:
        self.r = client
        self.prefix = prefix
        self.max = max_failures
        self.window_s = window_s

    def _keys(self, ip: str, email: str) -> tuple[str, str]:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24]
        return f"{self.prefix}login:{ip}:{digest}", f"{self.prefix}login-ip:{ip}"

    def retry_after_s(self, ip: str, email: str) -> int:
        """Seconds until another try is allowed (0 = allowed now)."""
        pair, per_ip = self._keys(ip, email)
        counts = self.r.mget(pair, per_ip)
        if int(counts[0] or 0) >= self.max:
            return max(1, int(self.r.ttl(pair)))
        if int(counts[1] or 0) >= self.max * 10:
            return max(1, int(self.r.ttl(per_ip)))
        return 0

    def failed(self, ip: str, email: str) -> None:
        with self.r.pipeline() as pipe:
            for key in self._keys(ip, email):
                pipe.incr(key)
                pipe.expire(key, self.window_s, nx=True)
            pipe.execute()

    def succeeded(self, ip: str, email: str) -> None:
        self.r.delete(self._keys(ip, email)[0])


def redis_client() -> redis.Redis:
    ext = current_app.extensions
    if "tickerbell_redis" not in ext:
        ext["tickerbell_redis"] = redis.Redis.from_url(
            ext["tickerbell_settings"].redis_url, socket_timeout=2, socket_connect_timeout=2
        )
    return ext["tickerbell_redis"]


def login_limiter() -> LoginLimiter:
    cfg = current_app.config
    return LoginLimiter(redis_client(), cfg["REDIS_PREFIX"], cfg["LOGIN_MAX_FAILURES"], cfg["LOGIN_LOCKOUT_S"])


def client_ip() -> str:
    # Heroku's router appends the client address; trust only the last hop it added.
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and current_app.config.get("TRUST_PROXY", False):
        return forwarded.split(",")[-1].strip()
    return request.remote_addr or "unknown"
