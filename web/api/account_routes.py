"""Accounts over the API: register, log in/out (session), password, bearer tokens, the CSRF token."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify
from flask_login import current_user, logout_user
from flask_wtf.csrf import generate_csrf

from events import models
from web.api import body, bp
from web.accounts import CHECK_INBOX, checked_confirmed, mail_sign_up
from web.auth import end_all_sessions, login_limited, remember_client, signup_limited, start_session, uid
from web.db import get_db
from web.errors import ApiError
from web.store import users


@bp.get("/csrf")
def csrf_token() -> Response:
    return jsonify(csrf_token=generate_csrf())


@bp.post("/auth/register")
@signup_limited
def register() -> tuple[Response, int]:
    """202 whatever the email: a new one gets an unconfirmed account and its link by mail, a taken
    one a notice to its owner (web.accounts); nobody is logged in until the link is followed."""
    data = body()
    signup = users.sign_up(get_db(), data.get("email"), data.get("password"))
    mail_sign_up(signup)
    return jsonify(status="check_inbox", message=CHECK_INBOX), 202


def _checked_login(data: dict[str, Any]) -> models.User:
    """The user whose email and password ``data`` gives (a view using it is ``login_limited``); a
    right password on an unconfirmed account is a 403 that mails the link again."""
    email = data.get("email")
    user = users.authenticate(get_db(), email, data.get("password"))
    if user is None:
        raise ApiError(401, "wrong email or password")
    checked_confirmed(user)
    remember_client(str(email))
    return user


@bp.post("/auth/login")
@login_limited
def login() -> Response:
    user = _checked_login(body())
    start_session(get_db(), user)
    return jsonify(id=user.id, email=user.email)


@bp.post("/auth/logout")
def logout() -> Response:
    """Log out everywhere: rotating the nonce ends every session and remember-me cookie of the user."""
    if current_user.is_authenticated and not _bearer():
        end_all_sessions(get_db(), uid())
    logout_user()
    return jsonify(ok=True)


def _bearer() -> bool:
    return bool(g.get("token_auth"))


@bp.post("/auth/password")
@login_limited
def change_password() -> Response:
    """A new password (the current one confirms it); every other session and remember-me cookie ends."""
    data = body()
    session = get_db()
    user = session.get(models.User, uid())
    if user is None or users.authenticate(session, user.email, data.get("current_password")) is None:
        raise ApiError(403, "the current password is wrong", {"current_password": "wrong password"})
    users.set_password(session, user, data.get("new_password"))
    end_all_sessions(session, user.id)
    if not _bearer():
        start_session(session, user)  # this browser stays logged in, under the new nonce
    return jsonify(ok=True)


@bp.post("/auth/token")
@login_limited
def issue_token() -> tuple[Response, int]:
    """Trade email + password for a bearer token (no session is created)."""
    data = body()
    user = _checked_login(data)
    row, token = users.create_token(get_db(), user.id, data.get("name") or "api")
    return jsonify(token=token, **users.token_json(row)), 201


@bp.get("/me")
def me() -> Response:
    return jsonify(id=uid(), email=current_user.email)


@bp.get("/tokens")
def list_tokens() -> Response:
    return jsonify([users.token_json(t) for t in users.list_tokens(get_db(), uid())])


@bp.post("/tokens")
def create_token() -> tuple[Response, int]:
    row, token = users.create_token(get_db(), uid(), body().get("name"))
    return jsonify(token=token, **users.token_json(row)), 201


@bp.delete("/tokens/<int:token_id>")
def delete_token(token_id: int) -> tuple[str, int]:
    users.delete_token(get_db(), uid(), token_id)
    return "", 204
