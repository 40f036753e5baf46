"""What a store operation can refuse, in domain terms (no HTTP here).

Every expected failure of ``web.store`` is a :class:`StoreError`: a message a person reads,
optional per-field messages (keyed like the form's fields) and optional extra facts
(``cap``, ``limit``). The web edge maps each kind to a status code in one place
(:func:`web.errors.status_of`); the operator CLI prints them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BadLink", "Conflict", "Forbidden", "Invalid", "LimitExceeded", "NotFound", "StoreError", "Unavailable"]


class StoreError(Exception):
    """An expected failure: ``message`` for people, ``fields`` per input field, ``extra`` facts."""

    def __init__(self, message: str, fields: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})
        self.extra = extra


class Invalid(StoreError):
    """Input that does not validate: a message per field (the first one is the summary)."""

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        name, text = next(iter(fields.items()), ("", "invalid input"))
        super().__init__(message or (f"{name}: {text}" if name else text), fields)


class NotFound(StoreError):
    """Nothing of that kind that the acting user may see (other users' objects included)."""

    def __init__(self, what: str = "resource") -> None:
        super().__init__(f"{what} not found")


class Conflict(StoreError):
    """The request contradicts the current state (a name in use, a list rules still watch)."""


class Forbidden(StoreError):
    """The acting user may not do this."""


class LimitExceeded(StoreError):
    """A per-account cap (``cap``, e.g. ``rules_per_user``) is reached."""

    def __init__(self, cap: str, limit: int, what: str) -> None:
        super().__init__(f"{what}: at most {limit} ({cap})", {cap: f"at most {limit}"}, cap=cap, limit=limit)


class Unavailable(StoreError):
    """A service the operation needs cannot be reached now; trying again later may work."""


class BadLink(StoreError):
    """A signed link (confirmation, sign-up) that is invalid, expired or no longer applies."""
