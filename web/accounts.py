"""Account pages: register, log in, log out (HTML forms, CSRF-protected)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask_limiter.errors import RateLimitExceeded
from flask_login import current_user, login_required, logout_user

from web.auth import (end_all_sessions, login_limited, remember_client, retry_after_s, signup_limited,
                      start_session, uid)
from web.db import get_db
from web.errors import ApiError
from web.store import users

bp = Blueprint("accounts", __name__)


def _safe_next(target: str | None) -> str:
    if target and not urlsplit(target).netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("pages.dashboard")


@bp.errorhandler(RateLimitExceeded)
def _too_many(exc: RateLimitExceeded):
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
def register():
    if current_user.is_authenticated:
        return redirect(url_for("pages.dashboard"))
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            user = users.register(get_db(), request.form.get("email"), request.form.get("password"))
        except ApiError as exc:
            errors = exc.fields or {"email": exc.message}
        else:
            start_session(get_db(), user)
            remember_client(user.email)
            return redirect(url_for("pages.dashboard"))
    return render_template("register.html", errors=errors, email=request.form.get("email", "")), (422 if errors else 200)


@bp.route("/login", methods=["GET", "POST"])
@login_limited
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    error = None
    status = 200
    if request.method == "POST":
        email = request.form.get("email", "")
        user = users.authenticate(get_db(), email, request.form.get("password"))
        if user is None:
            error, status = "Wrong email or password.", 401
        else:
            start_session(get_db(), user, remember=bool(request.form.get("remember")))
            remember_client(email)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, email=request.form.get("email", "")), status


@bp.post("/logout")
@login_required
def logout():
    """Log out everywhere: the nonce rotates, so this and every other session and remember-me cookie end."""
    end_all_sessions(get_db(), uid())
    logout_user()
    return redirect(url_for("accounts.login"))
