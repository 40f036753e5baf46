"""Slack with a bot token: post an alert with ``chat.postMessage``, update it in place on resolve.

An incoming webhook can only post; a bot token (``xoxb-...``, scope
``chat:write``) can also edit what it posted, so an alert that resolves turns
its own message into "resolved" instead of adding a second one. The message's
``ts`` and ``channel`` that Slack answers are what the update needs; the
delivery log keeps them.

Every call goes through the address guard and the whole-send deadline of
:mod:`alerts.transport` like any other outgoing request. Slack answers HTTP 200
with ``{"ok": false, "error": ...}`` for most failures: those are classified
here, a few as worth a retry (rate limits, Slack's own trouble), the rest as
permanent (a revoked token, a channel the bot is not in).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from alerts.netguard import UnsafeURL, safe_request
from alerts.retry import Outcome, classify_status, parse_retry_after
from alerts.transport import deadline, http_client

__all__ = ["SLACK_API", "SlackPost", "post_message", "update_message", "valid_token"]

SLACK_API = "https://slack.com/api"
MAX_ANSWER_BYTES = 16384
# Slack's error codes for which trying again later can help; any other is permanent
RETRYABLE_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout", "team_added_to_org"})
# the token or the workspace is gone: the channel should be disabled, not retried
GONE_ERRORS = frozenset({"invalid_auth", "account_inactive", "token_revoked", "token_expired", "not_authed",
                         "team_disabled", "org_login_required"})


@dataclass(frozen=True)
class SlackPost:
    """What a send produced: its outcome and, when it posted, where the message lives."""

    outcome: Outcome
    channel: str | None = None
    ts: str | None = None


def valid_token(token: str) -> bool:
    """A bot token's shape (``xoxb-`` and a bounded length); Slack itself is the judge of the rest."""
    return isinstance(token, str) and token.startswith("xoxb-") and 10 < len(token) <= 255 and token.isprintable()


def _call(method: str, token: str, payload: dict[str, Any], *, allow_private: bool, timeout_s: float,
          api_base: str) -> tuple[Outcome, dict[str, Any]]:
    url = f"{api_base.rstrip('/')}/{method}"
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"content-type": "application/json; charset=utf-8", "authorization": f"Bearer {token}",
               "accept-encoding": "identity"}
    started = time.monotonic()
    try:
        with deadline(timeout_s):
            response = safe_request(http_client(), "POST", url, allow_private=allow_private, content=body,
                                    headers=headers, timeout_s=timeout_s)
            try:
                raw = bytearray()
                for chunk in response.iter_raw():
                    raw += chunk
                    if len(raw) >= MAX_ANSWER_BYTES:
                        break
            finally:
                response.close()
    except UnsafeURL as exc:
        return Outcome(False, None, str(exc), retryable=False), {}
    except httpx.TimeoutException as exc:
        return Outcome(False, None, f"timeout: {type(exc).__name__} after {time.monotonic() - started:.1f} s",
                       retryable=True), {}
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"network error: {type(exc).__name__}"[:300], retryable=True), {}
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    if not 200 <= response.status_code < 300:
        return classify_status(response.status_code, retry_after), {}
    try:
        answer = json.loads(bytes(raw))
    except ValueError:
        return Outcome(False, response.status_code, "Slack answered something that is not JSON", retryable=True), {}
    if not isinstance(answer, dict):
        return Outcome(False, response.status_code, "Slack answered an unexpected document", retryable=True), {}
    if answer.get("ok") is True:
        return Outcome(True, response.status_code), answer
    error = str(answer.get("error") or "unknown_error")[:100]
    return Outcome(False, response.status_code, f"Slack: {error}", retryable=error in RETRYABLE_ERRORS,
                   retry_after_s=retry_after, gone=error in GONE_ERRORS), answer


def post_message(token: str, channel: str, text: str, blocks: list[dict[str, Any]] | None = None, *,
                 allow_private: bool, timeout_s: float = 10.0, api_base: str = SLACK_API) -> SlackPost:
    """``chat.postMessage``; on success the answer's channel id and ``ts`` identify the message."""
    payload: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
    if blocks:
        payload["blocks"] = blocks
    outcome, answer = _call("chat.postMessage", token, payload, allow_private=allow_private, timeout_s=timeout_s,
                            api_base=api_base)
    if not outcome.ok:
        return SlackPost(outcome)
    ts, where = answer.get("ts"), answer.get("channel")
    if not isinstance(ts, str) or not isinstance(where, str):
        return SlackPost(Outcome(False, outcome.status_code, "Slack posted but named no message", retryable=False))
    return SlackPost(outcome, where, ts)


def update_message(token: str, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None, *,
                   allow_private: bool, timeout_s: float = 10.0, api_base: str = SLACK_API) -> SlackPost:
    """``chat.update`` of the message at (``channel``, ``ts``): the same message, new content.

    Updating a message with the content it already has is harmless, so a redelivered
    resolve is too.
    """
    payload: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
    if blocks:
        payload["blocks"] = blocks
    outcome, _answer = _call("chat.update", token, payload, allow_private=allow_private, timeout_s=timeout_s,
                             api_base=api_base)
    return SlackPost(outcome, channel if outcome.ok else None, ts if outcome.ok else None)
