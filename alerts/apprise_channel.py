"""Apprise services (Telegram, Discord, Teams, ntfy, Pushover, ...) behind our own guard and log.

Apprise knows how to talk to some hundred notification services, one URL per
service (``tgram://bot-token/chat-id``, ``ntfy://host/topic``, ...). Tickerbell
uses it for the *what* (each service's request shape) and keeps the *how* for
itself, exactly as for its own Slack and webhook channels:

* **The address guard.** Every HTTP request an Apprise plugin makes, redirects
  included, is routed through :func:`alerts.netguard.safe_request`: the host is
  resolved once, refused when it is loopback, private, link-local or a metadata
  address (unless the operator allows private targets), and the connection goes
  to the very address that was checked. This works by handing the plugin's
  ``requests`` session our adapter (:class:`_GuardedAdapter`) for the duration
  of one send on this thread; other code in the process is unaffected.
* **The whole-send deadline and the read cap** of :mod:`alerts.transport`: a
  receiver that drips bytes cannot hold a worker, and at most
  :data:`MAX_ANSWER_BYTES` of an answer is read.
* **Our delivery log and retry schedule**, not Apprise's: one attempt per call
  (``retry=0``); the outcome (:class:`~alerts.retry.Outcome`) says whether a
  retry may help, with the receiver's status and ``Retry-After``.
* **HTTP services only.** Plugins that open other sockets (SMTP, XMPP, MQTT,
  desktop notifications, syslog) would bypass the guard, so only the schemes in
  :data:`SERVICES` are accepted.

Apprise's own log lines are captured per send (they become the outcome's error)
and kept out of the process log: plugin URLs carry tokens.

The alert's chart goes along as an attachment (from memory: no temporary file) to the
services of :data:`ATTACHING`, whose plugins upload it in the requests that carry the
message, so through the same guard. Other services get the text only: ntfy, for one,
would turn the message into a file upload that a server without attachment storage
refuses whole.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import apprise
import httpx
from apprise.attachment.memory import AttachMemory
import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict

from alerts.netguard import UnsafeURL, safe_request
from alerts.retry import Outcome, classify_status, parse_retry_after
from alerts.transport import deadline, http_client

__all__ = ["ATTACHING", "MAX_ANSWER_BYTES", "MAX_IMAGE_BYTES", "SERVICES", "URL_FORMS", "AppriseTarget", "parse_target",
           "send_apprise"]

# Apprise schemes whose plugins speak plain HTTP(S) through ``requests`` (and nothing else),
# with the service's name as people know it. Secure and plain forms both listed.
SERVICES: Mapping[str, str] = {
    "tgram": "Telegram", "discord": "Discord", "msteams": "Microsoft Teams", "workflow": "Microsoft Teams",
    "workflows": "Microsoft Teams", "ntfy": "ntfy", "ntfys": "ntfy", "pover": "Pushover",
    "gotify": "Gotify", "gotifys": "Gotify", "matrix": "Matrix", "matrixs": "Matrix",
    "mmost": "Mattermost", "mmosts": "Mattermost", "rocket": "Rocket.Chat", "rockets": "Rocket.Chat",
    "pbul": "Pushbullet", "signal": "Signal API", "signals": "Signal API", "zulip": "Zulip",
    "ifttt": "IFTTT", "opsgenie": "Opsgenie", "pagerduty": "PagerDuty", "pushed": "Pushed",
    "join": "Join", "line": "LINE", "guilded": "Guilded", "ryver": "Ryver", "flock": "Flock",
    "gchat": "Google Chat", "wxteams": "Webex Teams", "lark": "Lark", "feishu": "Feishu",
}
# the URL form of the services people ask for most, for the channel form's help (Apprise's wiki has the rest)
URL_FORMS: Mapping[str, str] = {
    "Telegram": "tgram://bot-token/chat-id", "Discord": "discord://webhook-id/webhook-token",
    "Microsoft Teams": "workflows://host:port/workflow/signature (a Teams workflow's URL)",
    "ntfy": "ntfys://ntfy.sh/topic or ntfys://user:password@host/topic", "Pushover": "pover://user-key@app-token",
    "Gotify": "gotifys://host/app-token", "Matrix": "matrixs://user:password@host/#room",
    "Mattermost": "mmosts://host/webhook-token", "Rocket.Chat": "rockets://user:password@host/#channel",
    "Pushbullet": "pbul://access-token", "Google Chat": "gchat://workspace/key/token",
    "Signal API": "signals://host/from-phone/to-phone", "Zulip": "zulip://bot-name@organization/token",
    "Opsgenie": "opsgenie://api-key", "PagerDuty": "pagerduty://integration-key@api-key",
}
# schemes whose plugins send an image with the message itself (multipart or base64 in the body)
ATTACHING = frozenset({"discord", "tgram", "pover", "pbul", "signal", "signals"})
MAX_URL_CHARS = 2048
MAX_IMAGE_BYTES = 1024 * 1024  # a chart is some 20 KB; never a large upload on a worker's deadline
MAX_ANSWER_BYTES = 65536  # some services answer a JSON document the plugin reads; never the 400 MB one

_policy: contextvars.ContextVar[_SendContext | None] = contextvars.ContextVar("apprise_guard", default=None)
_apprise_log = logging.getLogger("apprise")
_apprise_log.propagate = False  # its lines may carry tokens; they are captured per send instead
_apprise_log.addHandler(logging.NullHandler())


class AppriseURLError(ValueError):
    """An Apprise URL Tickerbell cannot use, with a message for the person who typed it."""


@dataclass(frozen=True)
class AppriseTarget:
    """A checked Apprise URL: the service's name and the URL with its secrets masked, for display."""

    scheme: str
    service: str
    display_url: str


def parse_target(url: str) -> AppriseTarget:
    """Check that ``url`` is an Apprise URL of a supported HTTP service; raise :class:`AppriseURLError`.

    Does no network I/O (the address guard runs at every send, where DNS answers count).
    """
    if not isinstance(url, str) or not url.strip():
        raise AppriseURLError("an Apprise URL is required, such as ntfy://ntfy.sh/my-topic")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise AppriseURLError(f"the URL is longer than {MAX_URL_CHARS} characters")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SERVICES:
        raise AppriseURLError(f"{scheme or 'that'}:// is not a supported service; supported: "
                              + ", ".join(sorted(set(SERVICES.values()))))
    plugin: Any = apprise.Apprise.instantiate(url, suppress_exceptions=True)  # its url() is untyped
    if plugin is None:
        raise AppriseURLError(f"not a valid {SERVICES[scheme]} URL (see the Apprise documentation for its form)")
    return AppriseTarget(scheme, SERVICES[scheme], str(plugin.url(privacy=True)))


@dataclass
class _SendContext:
    allow_private: bool
    timeout_s: float
    client: httpx.Client
    last_status: int | None = None
    retry_after_s: float | None = None
    refused: str | None = None
    network_error: str | None = None
    requests_made: int = 0
    answers: list[str] = field(default_factory=list)


class _GuardedAdapter(requests.adapters.BaseAdapter):
    """A ``requests`` adapter that sends through the address guard, the deadline and the read cap."""

    def __init__(self, ctx: _SendContext) -> None:
        super().__init__()
        self.ctx = ctx

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        ctx = self.ctx
        ctx.requests_made += 1
        raw = request.body
        if raw is not None and not isinstance(raw, (bytes, str)):
            raise requests.exceptions.ConnectionError("streamed request bodies are not supported")
        body = raw.encode() if isinstance(raw, str) else raw
        headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in (request.headers or {}).items()
                   if k.lower() not in ("host", "content-length")}
        headers["accept-encoding"] = "identity"
        try:
            answer = safe_request(ctx.client, request.method or "POST", request.url or "",
                                  allow_private=ctx.allow_private, content=body, headers=headers,
                                  timeout_s=ctx.timeout_s)
        except UnsafeURL as exc:
            ctx.refused = str(exc)
            raise requests.exceptions.ConnectionError(f"refused by the address guard: {exc}") from None
        except httpx.TimeoutException as exc:
            ctx.network_error = f"timeout: {type(exc).__name__}"
            raise requests.exceptions.Timeout(ctx.network_error) from None
        except httpx.HTTPError as exc:
            ctx.network_error = f"network error: {type(exc).__name__}: {exc}"[:300]
            raise requests.exceptions.ConnectionError(ctx.network_error) from None
        try:
            content = bytearray()
            for chunk in answer.iter_raw():
                content += chunk
                if len(content) >= MAX_ANSWER_BYTES:
                    break
        except httpx.HTTPError as exc:
            ctx.network_error = f"network error while reading the answer: {type(exc).__name__}"
            raise requests.exceptions.ConnectionError(ctx.network_error) from None
        finally:
            answer.close()
        ctx.last_status = answer.status_code
        ctx.retry_after_s = parse_retry_after(answer.headers.get("retry-after"), time.time())
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(dict(answer.headers.items()))
        response._content = bytes(content[:MAX_ANSWER_BYTES])
        response.encoding = answer.encoding
        response.reason = answer.reason_phrase
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


_original_get_adapter = requests.Session.get_adapter


def _get_adapter(self: requests.Session, url: str) -> requests.adapters.BaseAdapter:
    ctx = _policy.get()
    if ctx is None:
        return _original_get_adapter(self, url)
    return _GuardedAdapter(ctx)


# Installed once: sessions on threads without a send in progress keep requests' own adapters.
requests.Session.get_adapter = _get_adapter  # type: ignore[method-assign]


@contextmanager
def _guarded(ctx: _SendContext) -> Iterator[None]:
    token = _policy.set(ctx)
    try:
        yield
    finally:
        _policy.reset(token)


def send_apprise(url: str, title: str, body: str, *, allow_private: bool, timeout_s: float = 10.0,
                 attachments: list[str] | None = None, image_png: bytes | None = None) -> Outcome:
    """Send one notification through the Apprise service at ``url``; never raises for a failed send.

    ``attachments`` are local file paths. ``image_png`` (the alert's chart) is attached as
    ``chart.png`` for the services of :data:`ATTACHING` and left out for the others. The whole
    send, every request a plugin makes included, ends within ``timeout_s``.
    """
    try:
        target = parse_target(url)
    except AppriseURLError as exc:
        return Outcome(False, None, str(exc), retryable=False)
    notifier = apprise.Apprise()
    # our retry schedule, not the plugin's; its timeouts no longer than our deadline
    limit = f"{max(1.0, timeout_s):g}"
    joiner = "&" if "?" in url else "?"
    if not notifier.add(f"{url.strip()}{joiner}retry=0&cto={limit}&rto={limit}"):
        return Outcome(False, None, f"not a valid {target.service} URL", retryable=False)
    ctx = _SendContext(allow_private=allow_private, timeout_s=timeout_s, client=http_client())
    capture: Any = apprise.LogCapture  # untyped in apprise
    with capture(level=logging.WARNING) as captured, _guarded(ctx), deadline(timeout_s):
        try:
            attach = apprise.AppriseAttachment(attachments) if attachments else None
            if image_png and target.scheme in ATTACHING and len(image_png) <= MAX_IMAGE_BYTES:
                attach = attach or apprise.AppriseAttachment()
                memory: Any = AttachMemory  # untyped in apprise
                attach.add(memory(content=image_png, name="chart.png", mimetype="image/png"))
            delivered = bool(notifier.notify(body=body, title=title, attach=attach))
        except Exception as exc:  # a plugin bug must not kill the worker: report it as the outcome
            delivered = False
            ctx.network_error = ctx.network_error or f"{target.service} plugin error: {type(exc).__name__}"
        log_text = captured.getvalue().strip() if hasattr(captured, "getvalue") else ""
    if delivered:
        return Outcome(True, ctx.last_status, None)
    if ctx.refused:
        return Outcome(False, None, ctx.refused, retryable=False)
    if ctx.last_status is not None and not 200 <= ctx.last_status < 300:
        outcome = classify_status(ctx.last_status, ctx.retry_after_s)
        return Outcome(False, ctx.last_status, f"{target.service}: {outcome.error}", outcome.retryable,
                       outcome.retry_after_s, outcome.gone)
    if ctx.network_error:
        return Outcome(False, None, f"{target.service}: {ctx.network_error}", retryable=True)
    detail = log_text.splitlines()[-1][:300] if log_text else "the service refused the message"
    return Outcome(False, ctx.last_status, f"{target.service}: {detail}", retryable=ctx.requests_made > 0)
