"""Real servers on loopback for the notification tests: an SMTP server and an HTTP receiver."""

from __future__ import annotations

import email
import email.policy
import http.server
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Callable, Iterator

import pytest
from aiosmtpd.controller import Controller

from tests.support import free_port, wait_for  # noqa: F401 (re-exported for the alerts tests)


class _MailStore:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content,
                                                          policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    store: _MailStore

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.store.lock:
            return list(self.store.messages)

    def clear(self) -> None:
        with self.store.lock:
            self.store.messages.clear()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    store = _MailStore()
    port = free_port()
    controller = Controller(store, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(port, store)
    controller.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP server recording every request; ``script[path]`` = statuses to answer in turn (then 200)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    delay_s: float = 0.0
    on_request: Callable[[], None] | None = None  # runs before the answer (e.g. to inject a fault)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if receiver.delay_s:
                time.sleep(receiver.delay_s)  # a slow receiver, not synchronisation
            if receiver.on_request is not None:
                receiver.on_request()
            with receiver.lock:
                receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                  body, time.time()))
                queue = receiver.script.get(self.path)
                status, headers = queue.pop(0) if queue else (200, {})
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_POST = _answer
        do_GET = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
