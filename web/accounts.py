"""Account pages: register, confirm the sign-up's email, log in, log out (HTML forms, CSRF-protected).

A sign-up answers the same whatever the email (see :mod:`alerts.signup` for what
each case mails); the account logs in once its owner has followed the mailed link.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_limiter.errors import RateLimitExceeded
from flask_login import current_user, logout_user
from werkzeug.wrappers import Response as WerkzeugResponse

from web.auth import (end_all_sessions, login_limited, login_required, remember_client, retry_after_s,
                      signup_limited, start_session, uid)
from events import models
from web.db import get_db
from web.errors import ApiError, status_of
from web.extensions import app_settings
from web.store import users
from web.store.errors import StoreError

log = logging.getLogger(__name__)
bp = Blueprint("accounts", __name__)

CHECK_INBOX = ("check your inbox: we sent a mail to this address (if it does not arrive within a few "
               "minutes, check spam or try again later)")
UNCONFIRMED = ("confirm your email first: we have mailed the link again (at most one mail every 10 minutes); "
               "open it and press the button")


def mail_sign_up(signup: users.SignUp) -> None:
    """Queue the mail a sign-up (or a login of an unconfirmed account) sends; a broker outage is
    logged, not shown: the answer must not differ, and logging in again re-sends the link."""
    from web.api.channel_routes import enqueue

    try:
        enqueue("alerts.signup_mail", [signup.user_id, signup.mail])
    except Exception as exc:  # noqa: BLE001 - the account is saved; the link can be asked for again
        log.warning("user %s: could not queue the sign-up mail: %s", signup.user_id, exc)


def checked_confirmed(user: models.User) -> None:
    """Refuse a right password on an unconfirmed account (403), mailing its link again."""
    if not users.is_confirmed(user):
        mail_sign_up(users.SignUp(user.id, "link"))
        raise ApiError(403, UNCONFIRMED, {"email": "not confirmed yet"}, reason="email_unconfirmed")


def _secret_key() -> str:
    return app_settings().secret_key.get()


def _safe_next(target: str | None) -> str:
    if target and not urlsplit(target).netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("pages.dashboard")


@bp.errorhandler(RateLimitExceeded)
def _too_many(exc: RateLimitExceeded) -> tuple[str, int, dict[str, str]]:
    """The form again, saying how long to wait (the limits are in web.auth)."""
    wait_s = retry_after_s()
    wait = f"{wait_s} s" if wait_s < 120 else f"{wait_s // 60} min"
    if request.endpoint == "accounts.register":
        page = render_template("register.html", errors={"email": f"Too many sign-ups from here. Try again in {wait}."},
                               email=request.form.get("email", ""))
    else:
        page = render_template("login.html", error=f"Too many failed attempts. Try again in {wait}.",
                               email=request.form.get("email", ""))
    return page, 429, {"Retry-After": str(wait_s)}


@bp.route("/register", methods=["GET", "POST"])
@signup_limited
def register() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("pages.dashboard"))
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            signup = users.sign_up(get_db(), request.form.get("email"), request.form.get("password"))
        except StoreError as exc:
            errors = exc.fields or {"email": exc.message}
        else:
            mail_sign_up(signup)
            return render_template("register.html", sent=True, errors={}, email=users.normalise_email(
                request.form.get("email")))
    return render_template("register.html", errors=errors, email=request.form.get("email", "")), (422 if errors else 200)


@bp.route("/register/confirm/<token>", methods=["GET", "POST"])
def confirm_sign_up(token: str) -> ResponseReturnValue:
    """The link in a sign-up mail. GET only shows a button: mail scanners fetch every link in a
    message, and a fetch must not confirm (and log in) on the reader's behalf; the POST does."""
    session = get_db()
    try:
        if request.method == "POST":
            user = users.confirm_sign_up(session, _secret_key(), token)
            start_session(session, user)
            remember_client(user.email)
            return redirect(url_for("pages.dashboard"))
        address = users.pending_sign_up(session, _secret_key(), token)
    except StoreError as exc:
        return render_template("signup_confirm.html", state="invalid", message=exc.message), status_of(exc)
    return render_template("signup_confirm.html", state="ask", address=address)


@bp.route("/login", methods=["GET", "POST"])
@login_limited
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    error = None
    status = 200
    if request.method == "POST":
        email = request.form.get("email", "")
        user = users.authenticate(get_db(), email, request.form.get("password"))
        if user is None:
            error, status = "Wrong email or password.", 401
        elif not users.is_confirmed(user):
            try:
                checked_confirmed(user)
            except ApiError as exc:
                error, status = exc.message[0].upper() + exc.message[1:] + ".", exc.status
        else:
            start_session(get_db(), user, remember=bool(request.form.get("remember")))
            remember_client(email)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, email=request.form.get("email", "")), status


@bp.post("/logout")
@login_required
def logout() -> WerkzeugResponse:
    """Log out everywhere: the nonce rotates, so this and every other session and remember-me cookie end."""
    end_all_sessions(get_db(), uid())
    logout_user()
    return redirect(url_for("accounts.login"))
