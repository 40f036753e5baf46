"""Email channel confirmation (pure): the signed link a new address receives, and reading it back.

An email channel receives nothing until someone who reads that mailbox follows
the link: otherwise any account could make Tickerbell mail any address. The
token is an itsdangerous signature over (channel id, address) with the app's
``SECRET_KEY`` and a salt of its own (a session cookie or another token cannot
stand in for it); it expires after :data:`MAX_AGE_S`. Binding the address means
a link sent before the channel's address was changed confirms nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

__all__ = ["ConfirmationInvalid", "MAX_AGE_S", "confirmation_token", "confirmation_url", "read_confirmation_token"]

SALT = "tickerbell.channel-confirmation.v1"
MAX_AGE_S = 48 * 3600
PATH = "/channels/confirm/"


class ConfirmationInvalid(ValueError):
    """The link is forged, damaged or expired (the message says which, for the page)."""


@dataclass(frozen=True)
class Confirmation:
    channel_id: int
    address: str


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def confirmation_token(secret_key: str, channel_id: int, address: str) -> str:
    return _serializer(secret_key).dumps({"c": channel_id, "a": address})


def confirmation_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{PATH}{token}"


def read_confirmation_token(secret_key: str, token: str, max_age_s: int = MAX_AGE_S) -> Confirmation:
    """What a token confirms; raises :class:`ConfirmationInvalid`."""
    try:
        data = _serializer(secret_key).loads(token, max_age=max_age_s)
    except SignatureExpired:
        raise ConfirmationInvalid("this confirmation link has expired; ask for a new one on the channels page") from None
    except BadSignature:
        raise ConfirmationInvalid("this confirmation link is not valid (was it copied whole?)") from None
    if not isinstance(data, dict) or not isinstance(data.get("c"), int) or not isinstance(data.get("a"), str):
        raise ConfirmationInvalid("this confirmation link is not valid")
    return Confirmation(data["c"], data["a"])
