"""Account pages: register, log in, log out (HTML forms, CSRF-protected)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user, login_required, logout_user

from web.auth import LoginUser, client_ip, login_limiter
from web.db import get_db
from web.errors import ApiError
from web.store import users

bp = Blueprint("accounts", __name__)


def _safe_next(target: str | None) -> str:
    if target and not urlsplit(target).netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("pages.dashboard")


@bp.route("/register", methods=["GET", "POST"])
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
            from flask_login import login_user

            login_user(LoginUser(user))
            return redirect(url_for("pages.dashboard"))
    return render_template("register.html", errors=errors, email=request.form.get("email", "")), (422 if errors else 200)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    error = None
    status = 200
    if request.method == "POST":
        email = request.form.get("email", "")
        limiter, ip = login_limiter(), client_ip()
        wait_s = limiter.retry_after_s(ip, email)
        if wait_s:
            error, status = f"Too many failed attempts. Try again in {max(1, wait_s // 60)} min.", 429
        else:
            user = users.authenticate(get_db(), email, request.form.get("password"))
            if user is None:
                limiter.failed(ip, email)
                error, status = "Wrong email or password.", 401
            else:
                from flask_login import login_user

                limiter.succeeded(ip, email)
                login_user(LoginUser(user), remember=bool(request.form.get("remember")))
                return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error, email=request.form.get("email", "")), status


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("accounts.login"))
