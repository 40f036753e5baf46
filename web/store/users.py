"""Accounts and API tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from events import models
from web.auth import hash_token, new_token
from web.store.errors import BadLink, Conflict, Invalid, NotFound
from web.store.names import NO_CONTROL, has_control

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD = 8
# A fixed hash to compare against when the email is unknown, so both paths cost the same.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def normalise_email(email: Any) -> str:
    return str(email or "").strip().lower()


def _checked(email: Any, password: Any) -> tuple[str, str]:
    """The normalised email and the password of a sign-up, or 422 naming what is wrong."""
    email = normalise_email(email)
    password = str(password or "")
    errors: dict[str, str] = {}
    if not EMAIL.match(email) or len(email) > 254:
        errors["email"] = "enter a valid email address"
    if (problem := password_problem(password)):
        errors["password"] = problem
    if errors:
        raise Invalid(errors)
    return email, password


def _user_by_email(session: Session, email: str) -> models.User | None:
    return session.scalar(select(models.User).where(func.lower(models.User.email) == email))


def _create(session: Session, email: str, password_hash: str, confirmed: bool) -> models.User:
    user = models.User(email=email, password_hash=password_hash,
                       email_confirmed_at=datetime.now(timezone.utc) if confirmed else None)
    session.add(user)
    session.flush()
    # Everyone starts with one watchlist to put symbols in.
    session.add(models.Watchlist(user_id=user.id, name="My watchlist"))
    session.commit()
    return user


def register(session: Session, email: Any, password: Any, *, confirmed: bool = False) -> models.User:
    """An account for ``email`` (409 when it has one): unconfirmed unless ``confirmed`` (an operator's
    ``create-user``, the demo). The public sign-up is :func:`sign_up`, which never says 409."""
    email, password = _checked(email, password)
    if _user_by_email(session, email) is not None:
        raise Conflict("an account with this email already exists", {"email": "already registered"})
    return _create(session, email, generate_password_hash(password), confirmed)


@dataclass(frozen=True)
class SignUp:
    """What a sign-up mails its address (the answer to the client is the same either way)."""

    user_id: int
    mail: str  # "link": the account's confirmation link; "taken": a notice to the account's owner


def sign_up(session: Session, email: Any, password: Any) -> SignUp:
    """A sign-up: a new email gets an unconfirmed account, whose link is mailed; a confirmed
    account's email gets nothing changed and a notice mailed to its owner; an unconfirmed account's
    email takes this sign-up's password (the latest sign-up wins, and its link voids the earlier
    ones: see :mod:`alerts.signup`) and gets a new link. Malformed input is a 422 like anywhere."""
    email, password = _checked(email, password)
    # every path hashes the password, so the time to answer does not say whether the email was taken
    password_hash = generate_password_hash(password)
    user = _user_by_email(session, email)
    if user is None:
        try:
            return SignUp(_create(session, email, password_hash, confirmed=False).id, "link")
        except IntegrityError:  # a concurrent sign-up of the same email won
            session.rollback()
            user = _user_by_email(session, email)
            if user is None:
                raise
    if user.email_confirmed_at is None:
        user.password_hash = password_hash
        session.commit()
        return SignUp(user.id, "link")
    return SignUp(user.id, "taken")


def _linked_user(session: Session, secret_key: str, token: str) -> models.User:
    """The unconfirmed account a sign-up link is for; 400 naming why a link does not work."""
    from alerts.signup import SignupLinkInvalid, password_fingerprint, read_signup_token

    try:
        link = read_signup_token(secret_key, token)
    except SignupLinkInvalid as exc:
        raise BadLink(str(exc)) from None
    user = session.get(models.User, link.user_id)
    if user is None or user.email != link.address or password_fingerprint(user.password_hash) != link.fingerprint:
        raise BadLink("this link is for a sign-up that is no longer pending (a newer one replaced it)")
    if user.email_confirmed_at is not None:
        raise BadLink("this link was used already: log in with your email and password")
    return user


def pending_sign_up(session: Session, secret_key: str, token: str) -> str:
    """The address a sign-up link would confirm (the page shows it on the button)."""
    return _linked_user(session, secret_key, token).email


def confirm_sign_up(session: Session, secret_key: str, token: str) -> models.User:
    """Confirm the account a sign-up link names, once."""
    user = _linked_user(session, secret_key, token)
    # one UPDATE guarded by "not confirmed yet": of two clicks at once, only one confirms (and logs in)
    done = session.execute(update(models.User)
                           .where(models.User.id == user.id, models.User.email_confirmed_at.is_(None))
                           .values(email_confirmed_at=datetime.now(timezone.utc))
                           .execution_options(synchronize_session=False))
    session.commit()
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise BadLink("this link was used already: log in with your email and password")
    session.refresh(user)
    return user


def is_confirmed(user: models.User) -> bool:
    return user.email_confirmed_at is not None


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
        raise Invalid({"new_password": problem})
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
        raise Invalid({"name": "give the token a name (1-100 characters)"})
    if has_control(name):
        raise Invalid({"name": NO_CONTROL})
    token = new_token()
    row = models.ApiToken(user_id=user_id, name=name, token_hash=hash_token(token))
    session.add(row)
    session.commit()
    return row, token


def delete_token(session: Session, user_id: int, token_id: int) -> None:
    row = session.get(models.ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound("token")
    session.delete(row)
    session.commit()
