"""Services of the chaos session that a test may stop: its own Kafka broker and Redis, a cuttable
TCP proxy in front of PostgreSQL, and restartable SMTP/HTTP receivers on loopback.

The machine's shared broker, Redis and PostgreSQL are never touched: other tests and engineers
use them. Every fault here acts on a process or socket this session started.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from aiosmtpd.controller import Controller

from tests.e2e.stack import ROOT
from tests.support import free_port, wait_for


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class KafkaService(Protocol):
    """What the chaos session needs of its Kafka: where clients connect, the replication factor
    its topics get, and a way to take it all away and back (a single broker or a cluster)."""

    replication_factor: int

    @property
    def bootstrap(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class DedicatedKafka:
    """A second single-node broker run by ``scripts/kafka.sh`` on free ports, data under ``home``."""

    replication_factor = 1

    def __init__(self, home: Path) -> None:
        self.port, self.controller_port = free_port(), free_port()
        # kafka.sh shares any broker already answering on its port: make sure it is ours
        assert not port_open(self.port), f"port {self.port} taken"
        self.env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(self.controller_port),
                    "KAFKA_HOME_DIR": str(home), "KAFKA_HEAP": "384m"}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, action: str) -> None:
        done = subprocess.run([str(ROOT / "scripts/kafka.sh"), action], env=self.env, capture_output=True, text=True,
                              timeout=150)
        assert done.returncode == 0, f"kafka.sh {action}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")


class DedicatedRedis:
    """``redis-server`` without persistence: a restart loses every queued Celery task."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.popen = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(self.workdir)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 20, "redis to answer")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(20)


class CuttableProxy:
    """TCP on 127.0.0.1:``port`` -> PostgreSQL's unix socket. ``cut()`` closes every connection and
    refuses new ones (the database is unreachable); ``restore()`` listens again on the same port."""

    def __init__(self, upstream_unix: str) -> None:
        self.upstream = upstream_unix
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown first: it wakes the thread blocked in accept(); a bare close() would leave
            # the socket listening until that accept returned one more connection
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self._conns -= {src, dst}


class HoldingProxy:
    """TCP on 127.0.0.1:``port`` -> ``upstream_port`` (Redis, for one process). Once ``arm()``ed, the
    first client chunk carrying an ``LPUSH`` (a Celery task enqueued) goes through and that
    connection's next bytes are held until ``release()``: the client stays blocked mid-enqueue,
    with some of its batch's tasks in Redis and the rest not sent."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.tripped = threading.Event()
        self.passed = b""   # the client chunk with the LPUSH that tripped it (sent on to Redis)
        self._armed = False
        self._release = threading.Event()
        self._release.set()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self) -> None:
        self.tripped.clear()
        self._release.clear()
        self._armed = True

    def release(self) -> None:
        self._armed = False
        self._release.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            client, _ = listener.accept()
            upstream = socket.socket()
            try:
                upstream.connect(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()  # Redis is down: so is the connection
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if from_client and self._armed and b"LPUSH" in data.upper():
                    self._armed = False
                    self.passed = data
                    self.tripped.set()
                    self._release.wait(120)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class Receipt:
    """One notification as a receiver got it: the channel kind, its id (webhook-id or Message-ID)
    and the content the user reads (webhook body, plain-text mail body)."""

    kind: str
    msg_id: str
    content: str
    at: float


@dataclass
class Hold:
    """An armed trap in the webhook receiver: the first request whose body ``match`` accepts is
    recorded, then held open (no response) until ``release``; ``held`` is set meanwhile. After the
    release the receiver looks whether the sender hung up while it waited (``peer_closed``)."""

    match: Callable[[str], bool]
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    msg_id: str = ""
    at: float = 0.0
    peer_closed: bool = False


def _peer_closed(sock: socket.socket) -> bool:
    """True when the other end of ``sock`` has gone (EOF or reset) within a few seconds."""
    sock.settimeout(5)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError:
        return False


@dataclass
class Receivers:
    """A real SMTP server and HTTP receiver on fixed loopback ports, both stoppable and restartable;
    what they received survives their restarts."""

    smtp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    receipts: list[Receipt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _smtp: Controller | None = None
    _http: http.server.ThreadingHTTPServer | None = None
    _hold: Hold | None = None
    open_requests: int = 0   # requests held open right now

    def add(self, receipt: Receipt) -> None:
        with self.lock:
            self.receipts.append(receipt)

    def arm(self, match: Callable[[str], bool]) -> Hold:
        hold = Hold(match)
        with self.lock:
            self._hold = hold
        return hold

    def take_hold(self, content: str) -> Hold | None:
        with self.lock:
            hold = self._hold
            if hold is None or not hold.match(content):
                return None
            self._hold = None
            self.open_requests += 1
            return hold

    def got(self) -> list[Receipt]:
        with self.lock:
            return list(self.receipts)

    def start(self) -> None:
        self._smtp = Controller(_MailHandler(self), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.http_port), _http_handler(self))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._http = server

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _MailHandler:
    def __init__(self, receivers: Receivers) -> None:
        self.receivers = receivers

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        self.receivers.add(Receipt("email", str(msg["Message-ID"]), text.strip(), time.time()))
        return "250 OK"


def _http_handler(receivers: Receivers) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            content = body.decode(errors="replace")
            receipt = Receipt("webhook", self.headers.get("webhook-id", ""), content, time.time())
            receivers.add(receipt)
            hold = receivers.take_hold(content)
            if hold is not None:
                hold.msg_id, hold.at = receipt.msg_id, receipt.at
                hold.held.set()
                hold.release.wait(120)
                hold.peer_closed = _peer_closed(self.connection)
                with receivers.lock:
                    receivers.open_requests -= 1
                hold.done.set()
                self.close_connection = True
                if hold.peer_closed:
                    return
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    return Handler


CONTENT_KEY = re.compile(r"chaos rule=(\d+) value=([0-9.]+)")
