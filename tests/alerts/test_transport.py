"""SMTP over STARTTLS and implicit TLS with a login, against a real aiosmtpd server with a test CA."""

from __future__ import annotations

import ssl
import subprocess
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from alerts.transport import send_email
from tests.alerts.conftest import _MailStore, free_port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alerts", b"s3cret:/@")
    return AuthResult(success=ok)


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[ssl.SSLContext]:
    """The server's TLS context; the client trusts the test certificate through SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    yield context


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = "tls test", "a@tb.local", "me@x.y"
    msg.set_content("hello")
    return msg


def test_starttls_with_login(trusted: ssl.SSLContext) -> None:
    store, port = _MailStore(), free_port()
    controller = Controller(store, hostname="127.0.0.1", port=port, tls_context=trusted, require_starttls=True,
                            authenticator=authenticate, auth_require_tls=True)
    controller.start()
    try:
        ok = send_email(f"smtp+starttls://alerts:s3cret%3A%2F%40@127.0.0.1:{port}", message(), timeout_s=10)
        plain = send_email(f"smtp://alerts:s3cret%3A%2F%40@127.0.0.1:{port}", message(), timeout_s=10)
    finally:
        controller.stop()
    assert ok.ok, ok.error
    assert not plain.ok and "AUTH" in (plain.error or "")  # no login offered before TLS
    assert [m["Subject"] for m in store.messages] == ["tls test"]


def test_implicit_tls_smtps(trusted: ssl.SSLContext) -> None:
    store, port = _MailStore(), free_port()
    controller = Controller(store, hostname="127.0.0.1", port=port, ssl_context=trusted)
    controller.start()
    try:
        ok = send_email(f"smtps://127.0.0.1:{port}", message(), timeout_s=10)
    finally:
        controller.stop()
    assert ok.ok, ok.error
    assert len(store.messages) == 1


# --- whole-send deadlines and bounded answers (issue 11, finding 4) -------------------------------

import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

from alerts.transport import MAX_RESPONSE_BYTES, http_client, new_http_client, send_http  # noqa: E402


class RawServer:
    """A loopback TCP server that answers every connection with ``serve(conn)`` in a thread."""

    def __init__(self, serve) -> None:  # type: ignore[no-untyped-def]
        self.serve = serve
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.sent = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            self.serve(self, conn)
        except OSError:
            pass  # the client hung up: what the tests want
        finally:
            conn.close()

    def __enter__(self) -> "RawServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def read_request(conn: socket.socket) -> None:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        body += conn.recv(65536)


def drip(text: bytes, every_s: float):  # type: ignore[no-untyped-def]
    def serve(server: RawServer, conn: socket.socket) -> None:
        read_request(conn)
        for i in range(len(text)):
            if server.stop.wait(every_s):
                return
            conn.sendall(text[i:i + 1])
            server.sent += 1
    return serve


def test_a_receiver_dripping_its_headers_cannot_hold_a_send_past_its_deadline() -> None:
    # a byte every 0.5 s never trips a 2 s read timeout: only a whole-send deadline ends this
    endless = b"HTTP/1.1 200 OK\r\n" + b"x-slow: " + b"a" * 200
    with RawServer(drip(endless, 0.5)) as server:
        started = time.monotonic()
        outcome = send_http(http_client(), f"http://127.0.0.1:{server.port}/hook", b"{}", {}, allow_private=True,
                            timeout_s=2.0)
        elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.retryable and "timeout" in (outcome.error or "")
    assert 1.5 <= elapsed < 3.0, elapsed


def test_a_receiver_dripping_its_error_body_cannot_hold_a_send_past_its_deadline() -> None:
    answer = b"HTTP/1.1 500 Oops\r\ncontent-length: 1000\r\n\r\n" + b"e" * 1000

    def serve(server: RawServer, conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer[:60])
        for i in range(60, len(answer)):
            if server.stop.wait(0.3):
                return
            conn.sendall(answer[i:i + 1])

    with RawServer(serve) as server:
        started = time.monotonic()
        outcome = send_http(http_client(), f"http://127.0.0.1:{server.port}/hook", b"{}", {}, allow_private=True,
                            timeout_s=2.0)
        elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.retryable
    assert elapsed < 3.0, elapsed


def test_a_huge_error_body_is_read_only_a_few_kilobytes_deep() -> None:
    chunk = b"E" * 65536
    total = 400 * 1024 * 1024

    def serve(server: RawServer, conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 500 Huge\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % total)
        while server.sent < total and not server.stop.is_set():
            conn.sendall(chunk)  # generated as it goes: the 400 MB never exist at once
            server.sent += len(chunk)

    client = new_http_client()
    with RawServer(serve) as server:
        tracemalloc.start()
        started = time.monotonic()
        outcome = send_http(client, f"http://127.0.0.1:{server.port}/hook", b"{}", {}, allow_private=True,
                            timeout_s=10.0)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        time.sleep(0.2)  # not synchronisation: lets the server notice the closed connection before we count
        sent = server.sent
    client.close()
    assert (outcome.ok, outcome.status_code, outcome.retryable) == (False, 500, True)
    assert outcome.error is not None and outcome.error.startswith("HTTP 500: EEEE") and len(outcome.error) < 300
    assert elapsed < 2.0, elapsed
    assert peak < 2_000_000, f"{peak / 1e6:.1f} MB held while reading the answer"
    assert sent < 64 * 1024 * 1024, f"the receiver got {sent / 1e6:.0f} MB out before the connection closed"
    assert MAX_RESPONSE_BYTES <= 8192


def test_an_smtp_server_dripping_its_greeting_cannot_hold_a_send_past_its_deadline() -> None:
    with RawServer(lambda server, conn: drip(b"220 " + b"s" * 400 + b"\r\n", 0.3)(server, _Greeted(conn))) as server:
        started = time.monotonic()
        outcome = send_email(f"smtp://127.0.0.1:{server.port}", message(), timeout_s=2.0)
        elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.retryable and "within 2 s" in (outcome.error or ""), outcome
    assert elapsed < 3.0, elapsed


class _Greeted:
    """An SMTP server speaks first: no request to read before the (dripped) greeting."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def settimeout(self, t: float) -> None:
        pass

    def recv(self, n: int) -> bytes:
        return b"\r\n\r\n"

    def sendall(self, data: bytes) -> None:
        self.conn.sendall(data)
