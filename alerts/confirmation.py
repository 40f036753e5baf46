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

from alerts.links import LinkInvalid, SignedLink

__all__ = ["ConfirmationInvalid", "MAX_AGE_S", "confirmation_token", "confirmation_url", "read_confirmation_token"]

SALT = "tickerbell.channel-confirmation.v1"
MAX_AGE_S = 48 * 3600
PATH = "/channels/confirm/"


class ConfirmationInvalid(LinkInvalid):
    """The link is forged, damaged or expired (the message says which, for the page)."""


LINK = SignedLink(SALT, PATH, {"c": int, "a": str}, ConfirmationInvalid,
                  "this confirmation link has expired; ask for a new one on the channels page",
                  "this confirmation link is not valid", MAX_AGE_S)


@dataclass(frozen=True)
class Confirmation:
    channel_id: int
    address: str


def confirmation_token(secret_key: str, channel_id: int, address: str) -> str:
    return LINK.token(secret_key, c=channel_id, a=address)


def confirmation_url(public_url: str, token: str) -> str:
    return LINK.url(public_url, token)


def read_confirmation_token(secret_key: str, token: str, max_age_s: int = MAX_AGE_S) -> Confirmation:
    """What a token confirms; raises :class:`ConfirmationInvalid`."""
    data = LINK.read(secret_key, token, max_age_s)
    return Confirmation(data["c"], data["a"])
