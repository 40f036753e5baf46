"""Who is asking: session users (Flask-Login), bearer tokens (ApiToken), and the sign-in limits."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar, cast

import redis
from flask import Request, Response, current_app, g, request
from flask.typing import ResponseReturnValue
import flask_login
from flask_login import current_user, login_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from events import models
from web.db import get_db
from web.errors import ApiError
from web.extensions import app_settings, limiter, login_manager

log = logging.getLogger(__name__)

TOKEN_PREFIX = "tb_"
View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def user_for_token(session: Session, token: str) -> models.User | None:
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
    """The Flask-Login view of a :class:`events.models.User` (ids only, no ORM object kept).

    Its id, which Flask-Login keeps in the session and signs into the remember-me
    cookie, is ``"<user id>:<auth nonce>:<issued s>:<random>"``: rotating the user's
    nonce (logout, password change) ends every session and cookie made before; the
    issue time lets the loader refuse a cookie older than REMEMBER_COOKIE_DURATION
    whatever expiry the browser kept; the random part makes each login's cookie new.
    """

    def __init__(self, user: models.User, login_id: LoginId | None = None) -> None:
        self.id = user.id
        self.email = user.email
        self.is_admin = user.is_admin
        self.is_active = user.is_active
        self.is_authenticated = True
        self.is_anonymous = False
        self.login_id = login_id or LoginId(user.id, user.auth_nonce or "", int(time.time()), secrets.token_hex(6))

    def get_id(self) -> str:
        return self.login_id.encode()


@dataclass(frozen=True)
class LoginId:
    user_id: int
    nonce: str
    issued_s: int
    random: str

    def encode(self) -> str:
        return f"{self.user_id}:{self.nonce}:{self.issued_s}:{self.random}"


def parse_login_id(text: str) -> LoginId | None:
    """The parts of a session's user id, or None when it is not one of ours (e.g. from before nonces)."""
    parts = text.split(":")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[2].isdigit() or not parts[1] or not parts[3]:
        return None
    login_id = LoginId(int(parts[0]), parts[1], int(parts[2]), parts[3])
    return login_id if login_id.user_id < 2**31 else None


def _load_user(text: str) -> LoginUser | None:
    login_id = parse_login_id(text)
    if login_id is None:
        return None  # also sessions from before nonces: their holders log in once more
    max_age_s = current_app.config["REMEMBER_COOKIE_DURATION"].total_seconds()
    if not -60 <= time.time() - login_id.issued_s <= max_age_s:
        return None
    user = get_db().get(models.User, login_id.user_id)
    if user is None or not user.is_active or not hmac.compare_digest(login_id.nonce, user.auth_nonce or ""):
        return None
    return LoginUser(user, login_id)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def start_session(session: Session, user: models.User, remember: bool = False) -> None:
    """Log ``user`` in on this browser (the user's first login gives them a nonce)."""
    if not user.auth_nonce:
        user.auth_nonce = new_nonce()
        session.commit()
    login_user(LoginUser(user), remember=remember)


def end_all_sessions(session: Session, user_id: int) -> None:
    """Rotate the user's nonce: every session and remember-me cookie issued so far stops working."""
    user = session.get(models.User, user_id)
    if user is not None:
        user.auth_nonce = new_nonce()
        session.commit()


def _load_from_bearer(req: Request) -> LoginUser | None:
    header = req.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    user = user_for_token(get_db(), header[7:].strip())
    if user is None:
        return None
    g.token_auth = True
    return LoginUser(user)


def _unauthorized() -> ResponseReturnValue:
    from flask import redirect, url_for

    from web.errors import wants_json

    if wants_json():
        raise ApiError(401, "authentication required: log in or send `Authorization: Bearer <token>`")
    return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))


# Flask-Login's registration decorators are untyped: registered by call, the functions keep their types
login_manager.user_loader(_load_user)
login_manager.request_loader(_load_from_bearer)
login_manager.unauthorized_handler(_unauthorized)


def login_required(view: View) -> View:
    """Flask-Login's ``login_required``, typed: it wraps with ``functools.wraps`` (same signature),
    but Flask-Login ships no type information."""
    return cast(View, flask_login.login_required(view))


def uid() -> int:
    """The current user's id (call only behind ``login_required``)."""
    return int(current_user.id)


# --- sign-in and sign-up limits ---------------------------------------------------------
#
# Flask-Limiter counts in Redis (RATELIMIT_STORAGE_URI), so the limits hold across gunicorn
# workers and dynos. Failed logins are counted three ways, each over moving windows whose
# tiers make a back-off (a few tries a minute, then fewer per hour and day) instead of a
# lockout:
#   per account and client   an attacker guessing one account from one address;
#   per client               one address spraying many (or random) emails;
#   per account              guesses spread over many addresses; a client that has logged
#                            in to the account before is exempt, so the owner still gets in
#                            while someone else hammers the account.
# Only failures count (deduct_when 401): the owner's right password is never the one refused,
# unless the owner's own address made the failures. Client addresses are request.remote_addr,
# which ProxyFix sets from X-Forwarded-For for TRUST_PROXY_HOPS trusted proxies.

LOGIN_ACCOUNT_CLIENT = "login-account-client"
LOGIN_CLIENT = "login-client"
LOGIN_ACCOUNT = "login-account"
KNOWN_CLIENT_TTL_S = 30 * 86_400


def _prefix() -> str:
    return str(current_app.config["REDIS_PREFIX"])


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()[:24]


def _submitted_email() -> str:
    """The account a password check is about: the email a login form or JSON body names, else the
    signed-in user's (a password change), else ''."""
    if request.form.get("email"):
        return request.form["email"]
    try:
        data = request.get_json(silent=True)
    except (ValueError, RecursionError):
        data = None
    value = data.get("email") if isinstance(data, dict) else None
    if isinstance(value, str) and value:
        return value
    return current_user.email if current_user.is_authenticated else ""


def client_key() -> str:
    return f"{_prefix()}client:{request.remote_addr or 'unknown'}"


def account_key() -> str:
    return f"{_prefix()}account:{_digest(_submitted_email())}"


def account_client_key() -> str:
    return f"{_prefix()}account:{_digest(_submitted_email())}:client:{request.remote_addr or 'unknown'}"


def user_key() -> str:
    """Per signed-in user (behind login_required), else per client."""
    if current_user.is_authenticated:
        return f"{_prefix()}user:{current_user.id}"
    return client_key()


def _known_clients_key(email: str) -> str:
    return f"{_prefix()}login-known:{_digest(email)}"


def remember_client(email: str) -> None:
    """This client logged in to the account: the per-account limit no longer applies to it."""
    try:
        with redis_client().pipeline() as pipe:
            pipe.sadd(_known_clients_key(email), request.remote_addr or "unknown")
            pipe.expire(_known_clients_key(email), KNOWN_CLIENT_TTL_S)
            pipe.execute()
    except redis.RedisError:
        log.warning("could not record a known login client (Redis unavailable)")


def _is_known_client() -> bool:
    try:
        return bool(redis_client().sismember(_known_clients_key(_submitted_email()), request.remote_addr or "unknown"))
    except redis.RedisError:
        return False


def _failed(response: Response) -> bool:
    return response.status_code in (401, 403)


def _config_limit(name: str) -> Callable[[], str]:
    return lambda: str(current_app.config[name])


def limited_view(view: View, limit: Callable[[], str] | str, scope: str, **options: Any) -> View:
    """``view`` under one shared Flask-Limiter limit. The limiter wraps with ``functools.wraps`` (the
    view keeps its signature) but types its result as any view: the cast restores the view's type."""
    return cast(View, limiter.shared_limit(limit, scope, methods=["POST"], **options)(view))


def login_limited(view: View) -> View:
    """The three failed-login limits on a view that checks a password (shared by the page and the API)."""
    view = limited_view(view, _config_limit("LOGIN_LIMIT_ACCOUNT_CLIENT"), LOGIN_ACCOUNT_CLIENT,
                  key_func=account_client_key, deduct_when=_failed)
    view = limited_view(view, _config_limit("LOGIN_LIMIT_CLIENT"), LOGIN_CLIENT, key_func=client_key, deduct_when=_failed)
    return limited_view(view, _config_limit("LOGIN_LIMIT_ACCOUNT"), LOGIN_ACCOUNT, key_func=account_key,
                  deduct_when=_failed, exempt_when=_is_known_client)


def signup_limited(view: View) -> View:
    """Sign-ups per client, every attempt counted (mass sign-ups, probing which emails exist)."""
    return limited_view(view, _config_limit("SIGNUP_LIMIT"), "signup", key_func=client_key)


def test_send_limited(view: View) -> View:
    """Channel test-sends per user (the page and the API share the count)."""
    return limited_view(view, _config_limit("TEST_SEND_LIMIT"), "test-send", key_func=user_key)


def rate_limited(exc: Exception) -> Response:
    """429 with Retry-After, as JSON to API clients and as a page to people."""
    from flask import jsonify, render_template

    from web.errors import wants_json

    wait_s = retry_after_s()
    message = f"too many requests; try again in {wait_s} s"
    if wants_json():
        resp = jsonify(error="rate_limited", message=message, retry_after_s=wait_s)
    else:
        resp = current_app.make_response(render_template("error.html", status=429, error="rate_limited",
                                                         message=message))
    resp.status_code = 429
    resp.headers["Retry-After"] = str(wait_s)
    return resp


def retry_after_s() -> int:
    """Seconds until the limit this request broke lets a request through again (at least 1)."""
    breached = [lim for lim in limiter.current_limits if lim.breached] or limiter.current_limits
    reset_at = max((lim.reset_at for lim in breached), default=int(time.time()) + 60)
    return max(1, int(reset_at - time.time()))


def redis_client() -> redis.Redis:
    ext = current_app.extensions
    if "tickerbell_redis" not in ext:
        ext["tickerbell_redis"] = redis.Redis.from_url(app_settings().redis_url, socket_timeout=2,
                                                       socket_connect_timeout=2)
    return cast(redis.Redis, ext["tickerbell_redis"])
