"""Sign-up confirmation (pure): the signed link a new account's address receives, reading it back,
and the two mails a sign-up can send.

A sign-up answers the same whether or not its email has an account (that answer
must not tell anyone which addresses are registered), so what differs goes by
mail to the address itself: a new address gets a link that confirms the account
and logs its owner in; an address that already has an account gets a notice
that someone tried to sign up with it. The link is an itsdangerous signature
over (user id, address, a fingerprint of the password hash) with the app's
``SECRET_KEY`` and a salt of its own (neither a channel confirmation nor a
session cookie can stand in for it), valid :data:`MAX_AGE_S`. The fingerprint
ties a link to the sign-up it was mailed for: when a later sign-up of the same
unconfirmed address replaces the password, earlier links confirm nothing, so
whoever signs up with an address they do not read cannot have its owner confirm
an account whose password they know.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from email.message import EmailMessage

from alerts.links import LinkInvalid, SignedLink

__all__ = ["MAX_AGE_S", "SignupConfirmation", "SignupLinkInvalid", "link_email", "password_fingerprint",
           "read_signup_token", "signup_token", "signup_url", "taken_email"]

SALT = "tickerbell.signup-confirmation.v1"
MAX_AGE_S = 48 * 3600
PATH = "/register/confirm/"


class SignupLinkInvalid(LinkInvalid):
    """The link is forged, damaged or expired (the message says which, for the page)."""


LINK = SignedLink(SALT, PATH, {"u": int, "a": str, "p": str}, SignupLinkInvalid,
                  "this link has expired; log in with your email and password to get a new one",
                  "this link is not valid", MAX_AGE_S)


@dataclass(frozen=True)
class SignupConfirmation:
    user_id: int
    address: str
    fingerprint: str


def password_fingerprint(password_hash: str) -> str:
    """A short digest of the stored hash (the token's payload is readable: not the hash itself)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def signup_token(secret_key: str, user_id: int, address: str, password_hash: str) -> str:
    return LINK.token(secret_key, u=user_id, a=address, p=password_fingerprint(password_hash))


def signup_url(public_url: str, token: str) -> str:
    return LINK.url(public_url, token)


def read_signup_token(secret_key: str, token: str, max_age_s: int = MAX_AGE_S) -> SignupConfirmation:
    """What a token confirms; raises :class:`SignupLinkInvalid`."""
    data = LINK.read(secret_key, token, max_age_s)
    return SignupConfirmation(data["u"], data["a"], data["p"])


def link_email(address: str, link: str, mail_from: str, expires_h: int) -> EmailMessage:
    """The mail a new sign-up's address receives: the link that confirms the account."""
    msg = EmailMessage()
    msg["Subject"] = "[Tickerbell] Confirm your email to finish signing up"
    msg["From"] = mail_from
    msg["To"] = address
    msg.set_content(
        f"Someone (hopefully you) created a Tickerbell account for {address}.\n\n"
        f"To finish, open this link within {expires_h} hours and confirm:\n{link}\n\n"
        "If you did not sign up, ignore this mail: the account stays unusable and nothing more is sent.\n")
    msg.add_alternative(
        f"<html><body><p>Someone (hopefully you) created a Tickerbell account for {html.escape(address)}.</p>"
        f"<p><a href='{html.escape(link, quote=True)}'>Confirm your email</a> (within {expires_h} hours) to "
        "finish signing up.</p><p style='color:#888'>If you did not sign up, ignore this mail: the account "
        "stays unusable and nothing more is sent.</p></body></html>", subtype="html")
    return msg


def taken_email(address: str, public_url: str, mail_from: str) -> EmailMessage:
    """The mail an address that already has an account receives when someone signs up with it."""
    login = f"{public_url.rstrip('/')}/login"
    msg = EmailMessage()
    msg["Subject"] = "[Tickerbell] Someone tried to sign up with your address"
    msg["From"] = mail_from
    msg["To"] = address
    msg.set_content(
        f"Someone tried to create a Tickerbell account for {address}, which already has one.\n\n"
        f"If that was you, log in at {login} (if you forgot your password, ask your Tickerbell "
        "administrator to reset it).\n\n"
        "If it was not you, nothing changed: your account and password are as they were.\n")
    msg.add_alternative(
        f"<html><body><p>Someone tried to create a Tickerbell account for {html.escape(address)}, which already "
        f"has one.</p><p>If that was you, <a href='{html.escape(login, quote=True)}'>log in</a> (if you forgot "
        "your password, ask your Tickerbell administrator to reset it).</p><p style='color:#888'>If it was not "
        "you, nothing changed: your account and password are as they were.</p></body></html>", subtype="html")
    return msg
