"""Accounts over the API: register, log in/out (session), bearer tokens, the CSRF token."""

from __future__ import annotations

from flask import jsonify
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import generate_csrf

from events import models
from web.api import body, bp
from web.auth import LoginUser, client_ip, login_limiter, uid
from web.db import get_db
from web.errors import ApiError
from web.store import users


@bp.get("/csrf")
def csrf_token():
    return jsonify(csrf_token=generate_csrf())


@bp.post("/auth/register")
def register():
    data = body()
    user = users.register(get_db(), data.get("email"), data.get("password"))
    login_user(LoginUser(user))
    return jsonify(id=user.id, email=user.email), 201


def _checked_login(data: dict) -> models.User:
    email = str(data.get("email") or "")
    limiter = login_limiter()
    ip = client_ip()
    wait_s = limiter.retry_after_s(ip, email)
    if wait_s:
        raise ApiError(429, f"too many failed logins; try again in {wait_s} s", retry_after_s=wait_s)
    user = users.authenticate(get_db(), email, data.get("password"))
    if user is None:
        limiter.failed(ip, email)
        raise ApiError(401, "wrong email or password")
    limiter.succeeded(ip, email)
    return user


@bp.post("/auth/login")
def login():
    user = _checked_login(body())
    login_user(LoginUser(user))
    return jsonify(id=user.id, email=user.email)


@bp.post("/auth/logout")
def logout():
    logout_user()
    return jsonify(ok=True)


@bp.post("/auth/token")
def issue_token():
    """Trade email + password for a bearer token (no session is created)."""
    data = body()
    user = _checked_login(data)
    row, token = users.create_token(get_db(), user.id, data.get("name") or "api")
    return jsonify(token=token, **users.token_json(row)), 201


@bp.get("/me")
def me():
    return jsonify(id=uid(), email=current_user.email)


@bp.get("/tokens")
def list_tokens():
    return jsonify([users.token_json(t) for t in users.list_tokens(get_db(), uid())])


@bp.post("/tokens")
def create_token():
    row, token = users.create_token(get_db(), uid(), body().get("name"))
    return jsonify(token=token, **users.token_json(row)), 201


@bp.delete("/tokens/<int:token_id>")
def delete_token(token_id: int):
    users.delete_token(get_db(), uid(), token_id)
    return "", 204
