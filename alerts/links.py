"""Signed links mailed to an address (pure): one shape for every "prove you read this mailbox" link.

A :class:`SignedLink` is an itsdangerous timed signature with the app's ``SECRET_KEY`` and a salt
of its own (so no other token or session cookie can stand in for it), over a small JSON payload
of named, typed fields, at a path of the web app. Reading one back checks the signature, the age
and the payload's shape, and raises the link kind's own error with a message for the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

__all__ = ["LinkInvalid", "SignedLink"]


class LinkInvalid(ValueError):
    """The link is forged, damaged or expired (the message says which, for the page)."""


@dataclass(frozen=True)
class SignedLink:
    salt: str
    path: str
    fields: dict[str, type]          # payload key -> its type
    error: type[LinkInvalid]
    expired_message: str
    invalid_message: str
    max_age_s: int = 48 * 3600

    def token(self, secret_key: str, **payload: Any) -> str:
        return URLSafeTimedSerializer(secret_key, salt=self.salt).dumps(payload)

    def url(self, public_url: str, token: str) -> str:
        return f"{public_url.rstrip('/')}{self.path}{token}"

    def read(self, secret_key: str, token: str, max_age_s: int | None = None) -> dict[str, Any]:
        """The payload of a valid, unexpired token; raises ``self.error``."""
        try:
            data = URLSafeTimedSerializer(secret_key, salt=self.salt).loads(
                token, max_age=self.max_age_s if max_age_s is None else max_age_s)
        except SignatureExpired:
            raise self.error(self.expired_message) from None
        except BadSignature:
            raise self.error(f"{self.invalid_message} (was it copied whole?)") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in self.fields.items()):
            raise self.error(self.invalid_message)
        return data
