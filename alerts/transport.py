"""The network edge of notifications: SMTP and HTTP sends, each returning an :class:`Outcome`.

Never raises for a failed send: network errors, timeouts and refusals
become outcomes the retry policy understands.

Every send has a *whole* deadline, not only per-read timeouts (a receiver
that drips one byte every few seconds never trips a read timeout):

* HTTP goes through :func:`http_client`, whose connections read and write
  through :class:`_DeadlineStream`: each socket operation may take at most
  what is left of the deadline set by :func:`deadline` on this thread, so a
  send ends within ``timeout_s`` whatever the receiver does, on new and
  pooled connections alike. At most :data:`MAX_RESPONSE_BYTES` of an answer
  are read (undecoded: no decompression bomb), then the connection is closed.
* SMTP runs under a watchdog that shuts the socket down at the deadline.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from alerts.netguard import UnsafeURL, safe_request
from alerts.retry import Outcome, classify_status, parse_retry_after

__all__ = ["MAX_RESPONSE_BYTES", "deadline", "http_client", "read_capped", "send_email", "send_http", "smtp_connect"]

MAX_RESPONSE_BYTES = 4096  # of a receiver's answer: enough for an error message, never the 400 MB one

# --- HTTP: a deadline every socket operation honours ---------------------------------------------

_local = threading.local()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every HTTP socket operation of this thread, together, to ``seconds`` from now."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def _bounded(timeout: float | None, exc: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of this thread's deadline; ``exc`` once none is left."""
    end: float | None = getattr(_local, "deadline", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise exc("the send's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _bounded(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address,
                                         socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _bounded(timeout, httpcore.ConnectTimeout),
                                                               socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool on the deadline backend (no proxies: the guard
    pins each request to the address it checked)."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend())


def new_http_client() -> httpx.Client:
    """A pooled client whose sends honour :func:`deadline` (thread-safe)."""
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
    return httpx.Client(transport=_DeadlineTransport(limits), limits=limits)


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """The process's one client for user-supplied URLs."""
    global _client
    with _client_lock:
        if _client is None:
            _client = new_http_client()
        return _client


def read_capped(response: httpx.Response, max_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
    """The first ``max_bytes`` of a streamed response's body as sent (not decompressed)."""
    got = bytearray()
    for chunk in response.iter_raw():
        got += chunk
        if len(got) >= max_bytes:
            break
    return bytes(got[:max_bytes])


def send_http(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], *,
              allow_private: bool, timeout_s: float = 10.0) -> Outcome:
    """POST ``body`` to a user-supplied URL through the SSRF guard, all of it within ``timeout_s``.

    ``client`` should come from :func:`http_client` (another client keeps only per-read timeouts).
    """
    started = time.monotonic()
    try:
        with deadline(timeout_s):
            response = safe_request(client, "POST", url, allow_private=allow_private, content=body,
                                    headers={"accept-encoding": "identity", **headers}, timeout_s=timeout_s)
            try:
                answer = read_capped(response) if not 200 <= response.status_code < 300 else b""
            finally:
                response.close()
    except UnsafeURL as exc:
        return Outcome(False, None, str(exc), retryable=False)
    except httpx.TimeoutException as exc:
        return Outcome(False, None, f"timeout: {type(exc).__name__} after {time.monotonic() - started:.1f} s "
                                    f"(deadline {timeout_s:g} s)", retryable=True)
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"network error: {type(exc).__name__}: {exc}"[:500], retryable=True)
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    outcome = classify_status(response.status_code, retry_after)
    if not outcome.ok:
        snippet = answer[:200].decode("utf-8", "replace").strip()
        if snippet:
            outcome = Outcome(outcome.ok, outcome.status_code, f"{outcome.error}: {snippet}", outcome.retryable,
                              outcome.retry_after_s, outcome.gone)
    return outcome


# --- SMTP: a watchdog on the whole conversation ---------------------------------------------------


def smtp_connect(smtp_url: str, timeout_s: float,
                 on_connection: Callable[[smtplib.SMTP], None] | None = None) -> smtplib.SMTP:
    """An authenticated SMTP connection from ``smtp://``, ``smtp+starttls://`` or ``smtps://`` URLs.

    ``on_connection`` sees the connection object before it connects (the watchdog needs it to
    cut a server that drips its greeting)."""
    parts = urlsplit(smtp_url)
    host = parts.hostname or "127.0.0.1"
    scheme = parts.scheme
    conn: smtplib.SMTP
    if scheme == "smtps":
        conn = smtplib.SMTP_SSL(timeout=timeout_s, context=ssl.create_default_context())
        port = parts.port or 465
    else:
        conn = smtplib.SMTP(timeout=timeout_s)
        port = parts.port or (587 if scheme == "smtp+starttls" else 25)
    if on_connection is not None:
        on_connection(conn)
    conn._host = host  # type: ignore[attr-defined]  # what the constructor would have set: STARTTLS and SMTPS check the certificate against it
    conn.connect(host, port)
    if scheme == "smtp+starttls":
        conn.starttls(context=ssl.create_default_context())
    if parts.username:
        conn.login(unquote(parts.username), unquote(parts.password or ""))
    return conn


class _Watchdog:
    """Shuts an SMTP connection's socket down once ``timeout_s`` have passed."""

    def __init__(self, timeout_s: float) -> None:
        self.conn: smtplib.SMTP | None = None
        self.fired = threading.Event()
        self._timer = threading.Timer(timeout_s, self._cut)
        self._timer.daemon = True

    def watch(self, conn: smtplib.SMTP) -> None:
        self.conn = conn

    def _cut(self) -> None:
        self.fired.set()
        sock = getattr(self.conn, "sock", None)
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # wakes a blocked read (TLS sockets too)
            except OSError:
                pass

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def send_email(smtp_url: str, message: EmailMessage, timeout_s: float = 15.0) -> Outcome:
    """Send one message within ``timeout_s``. SMTP 4xx and network errors retry; 5xx (e.g. unknown
    recipient) fail for good."""
    with _Watchdog(timeout_s) as watchdog:
        try:
            conn = smtp_connect(smtp_url, timeout_s, watchdog.watch)
            try:
                refused = conn.send_message(message)
            except ValueError as exc:  # a message smtplib cannot send (a bad header): it will not get better
                return Outcome(False, None, f"message refused: {exc}"[:500], retryable=False)
            finally:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            temporary = all(400 <= c < 500 for c in codes)
            return Outcome(False, codes[0] if codes else None, f"recipient refused: {exc.recipients}",
                           retryable=temporary)
        except smtplib.SMTPResponseException as exc:
            if watchdog.fired.is_set():
                return Outcome(False, None, f"SMTP error: no complete answer within {timeout_s:g} s", retryable=True)
            return Outcome(False, exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500],
                           retryable=400 <= exc.smtp_code < 500)
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            if watchdog.fired.is_set():
                return Outcome(False, None, f"SMTP error: no complete answer within {timeout_s:g} s", retryable=True)
            return Outcome(False, None, f"SMTP error: {type(exc).__name__}: {exc}"[:500], retryable=True)
    if refused:
        return Outcome(False, None, f"recipients refused: {refused}", retryable=False)
    return Outcome(True, 250)
