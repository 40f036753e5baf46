"""What one user and one request may ask of the app: per-user caps and request-body bounds.

The caps keep one account from growing the engine's state (rules, watched
symbols) or tying up a worker (a preview over years of bars, a million-row
export) for everyone else. They are one frozen object, ``API_LIMITS`` in the
Flask config (``create_app({"API_LIMITS": ApiLimits(...)})``), passed
explicitly to the stores; a refusal names the cap it hit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app

from web.errors import ApiError

if TYPE_CHECKING:
    from web.auth import View


@dataclass(frozen=True)
class ApiLimits:
    body_bytes: int = 256 * 1024  # the largest legitimate body (a rule with a 4000-character message) is ~6 kB
    json_depth: int = 16  # a rule condition nests 3 deep; parsing 100 000 brackets must not reach the parser
    symbols_per_watchlist: int = 200
    watchlists_per_user: int = 50
    rules_per_user: int = 500
    preview_bars: int = 600_000  # bars a preview holds at once (days x bars per day x symbols): a year of one symbol's minutes
    export_rows: int = 200_000  # rows of one CSV export
    overview_rows: int = 100_000  # bars one overview aggregates in memory (~20 MB of rows): 70 days of one symbol's minutes


def api_limits() -> ApiLimits:
    return current_app.config.get("API_LIMITS") or ApiLimits()


def cap_reached(cap: str, limit: int, what: str) -> ApiError:
    """The answer when a per-user count is at its cap (409: the request is fine, the account is full)."""
    return ApiError(409, f"{what}: at most {limit} ({cap})", {cap: f"at most {limit}"}, cap=cap, limit=limit)


CHANNEL_CREATE_LIMIT = "20/hour;100/day"  # the default of the app's CHANNEL_CREATE_LIMIT


def channel_create_limited(view: View) -> View:
    """Channel creations per user: creating an email channel mails its address a confirmation, so
    an account must not create them without end (the per-address window in the worker bounds one
    address; this bounds one account over many addresses). Only creations count (201): a refused
    body mails nothing. A Flask-Limiter limit in Redis like the sign-in limits (web.auth); over
    it, a 429 with Retry-After before anything is created."""
    from web.auth import limited_view, user_key

    return limited_view(view, lambda: str(current_app.config.get("CHANNEL_CREATE_LIMIT", CHANNEL_CREATE_LIMIT)),
                        "channel-create", key_func=user_key, deduct_when=lambda resp: resp.status_code == 201)


_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)  # an escape pair, a quote or a bracket: no backtracking


def json_depth(raw: bytes, stop_at: int) -> int:
    """How deeply ``raw`` (JSON text) nests arrays and objects, counted up to ``stop_at``.

    A linear scan of the bytes, before any parsing: brackets inside strings do
    not count, escapes are skipped in pairs. Malformed text gives some number;
    the parser refuses it afterwards.
    """
    depth = deepest = 0
    in_string = False
    for token in _TOKENS.findall(raw):
        if len(token) == 2:  # backslash and the character it escapes, whatever it is
            continue
        if token == b'"':
            in_string = not in_string
        elif in_string:
            continue
        elif token in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest >= stop_at:
                    return deepest
        else:
            depth -= 1
    return deepest


def type_name(value: Any) -> str:
    """JSON's name for a decoded value's type, for messages (``got an object``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
