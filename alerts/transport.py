"""The network edge of notifications: SMTP and HTTP sends, each returning an :class:`Outcome`.

Never raises for a failed send: network errors, timeouts and refusals
become outcomes the retry policy understands.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import httpx

from alerts.netguard import UnsafeURL, safe_request
from alerts.retry import Outcome, classify_status, parse_retry_after

__all__ = ["send_email", "send_http", "smtp_connect"]


def smtp_connect(smtp_url: str, timeout_s: float) -> smtplib.SMTP:
    """An authenticated SMTP connection from ``smtp://``, ``smtp+starttls://`` or ``smtps://`` URLs."""
    parts = urlsplit(smtp_url)
    host = parts.hostname or "127.0.0.1"
    scheme = parts.scheme
    if scheme == "smtps":
        conn: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465, timeout=timeout_s,
                                              context=ssl.create_default_context())
    else:
        conn = smtplib.SMTP(host, parts.port or (587 if scheme == "smtp+starttls" else 25), timeout=timeout_s)
        if scheme == "smtp+starttls":
            conn.starttls(context=ssl.create_default_context())
    if parts.username:
        conn.login(unquote(parts.username), unquote(parts.password or ""))
    return conn


def send_email(smtp_url: str, message: EmailMessage, timeout_s: float = 15.0) -> Outcome:
    """Send one message. SMTP 4xx and network errors retry; 5xx (e.g. unknown recipient) fail for good."""
    try:
        conn = smtp_connect(smtp_url, timeout_s)
        try:
            refused = conn.send_message(message)
        finally:
            try:
                conn.quit()
            except smtplib.SMTPException:
                pass
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        temporary = all(400 <= c < 500 for c in codes)
        return Outcome(False, codes[0] if codes else None, f"recipient refused: {exc.recipients}", retryable=temporary)
    except smtplib.SMTPResponseException as exc:
        return Outcome(False, exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500],
                       retryable=400 <= exc.smtp_code < 500)
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        return Outcome(False, None, f"SMTP error: {type(exc).__name__}: {exc}"[:500], retryable=True)
    if refused:
        return Outcome(False, None, f"recipients refused: {refused}", retryable=False)
    return Outcome(True, 250)


def send_http(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], *,
              allow_private: bool, timeout_s: float = 10.0) -> Outcome:
    """POST ``body`` to a user-supplied URL through the SSRF guard."""
    try:
        response = safe_request(client, "POST", url, allow_private=allow_private, content=body,
                                headers=headers, timeout_s=timeout_s)
    except UnsafeURL as exc:
        return Outcome(False, None, str(exc), retryable=False)
    except httpx.TimeoutException as exc:
        return Outcome(False, None, f"timeout: {type(exc).__name__}", retryable=True)
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"network error: {type(exc).__name__}: {exc}"[:500], retryable=True)
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    outcome = classify_status(response.status_code, retry_after)
    if not outcome.ok:
        snippet = response.text[:200].strip()
        if snippet:
            outcome = Outcome(outcome.ok, outcome.status_code, f"{outcome.error}: {snippet}", outcome.retryable,
                              outcome.retry_after_s, outcome.gone)
    return outcome
