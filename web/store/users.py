"""Accounts and API tokens."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from events import models
from web.auth import hash_token, new_token
from web.errors import ApiError, ValidationFailed, not_found
from web.store.names import NO_CONTROL, has_control

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD = 8
# A fixed hash to compare against when the email is unknown, so both paths cost the same.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def normalise_email(email: Any) -> str:
    return str(email or "").strip().lower()


def register(session: Session, email: Any, password: Any) -> models.User:
    email = normalise_email(email)
    password = str(password or "")
    errors: dict[str, str] = {}
    if not EMAIL.match(email) or len(email) > 254:
        errors["email"] = "enter a valid email address"
    if (problem := password_problem(password)):
        errors["password"] = problem
    if errors:
        raise ValidationFailed(errors)
    if session.scalar(select(models.User.id).where(func.lower(models.User.email) == email)) is not None:
        raise ApiError(409, "an account with this email already exists", {"email": "already registered"})
    user = models.User(email=email, password_hash=generate_password_hash(password))
    session.add(user)
    session.flush()
    # Everyone starts with one watchlist to put symbols in.
    session.add(models.Watchlist(user_id=user.id, name="My watchlist"))
    session.commit()
    return user


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"use at least {MIN_PASSWORD} characters"
    if len(password) > 200:
        return "use at most 200 characters"
    return None


def set_password(session: Session, user: models.User, password: Any) -> None:
    """Hash and store a new password (the caller rotates the user's sessions)."""
    password = password if isinstance(password, str) else ""
    if (problem := password_problem(password)):
        raise ValidationFailed({"new_password": problem})
    user.password_hash = generate_password_hash(password)
    session.commit()


def authenticate(session: Session, email: Any, password: Any) -> models.User | None:
    user = session.scalar(select(models.User).where(models.User.email == normalise_email(email)))
    # every path checks one hash, so the answer's timing says nothing about the account
    # (unknown, disabled or wrong password)
    matches = check_password_hash(user.password_hash if user else _DUMMY_HASH, str(password or ""))
    if user is None or not user.is_active or not matches:
        return None
    return user


def token_json(row: models.ApiToken) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "created_at": row.created_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }


def list_tokens(session: Session, user_id: int) -> list[models.ApiToken]:
    return list(session.scalars(select(models.ApiToken).where(models.ApiToken.user_id == user_id).order_by(models.ApiToken.id)))


def create_token(session: Session, user_id: int, name: Any) -> tuple[models.ApiToken, str]:
    """A new token; the plain value is returned once and only its hash is stored."""
    name = str(name or "").strip()
    if not 1 <= len(name) <= 100:
        raise ValidationFailed({"name": "give the token a name (1-100 characters)"})
    if has_control(name):
        raise ValidationFailed({"name": NO_CONTROL})
    token = new_token()
    row = models.ApiToken(user_id=user_id, name=name, token_hash=hash_token(token))
    session.add(row)
    session.commit()
    return row, token


def delete_token(session: Session, user_id: int, token_id: int) -> None:
    row = session.get(models.ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise not_found("token")
    session.delete(row)
    session.commit()
