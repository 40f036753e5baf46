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
