"""Socket.IO end to end: Kafka -> bridge -> Redis message queue -> the app on a loopback port -> a client.

The python-socketio client connects with the session cookie of a user who
registered over HTTP (and a second one with an API token), joins a symbol
room and receives the coalesced updates and its own alerts; an
unauthenticated client is refused, and nobody can join another user's room.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable

import pytest
import requests
import socketio

from events.db import upgrade
from events.kafka import EventProducer, ShutdownFlag
from events.settings import Settings
from tests.web.conftest import make_app, signup_link
from tests.web.events_factory import alert, bar, tick
from web.bridge import run_bridge


def wait_for(cond: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        threading.Event().wait(0.05)  # polling interval of the wait, with a deadline
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def register(server: Any, email: str) -> requests.Session:
    """Sign up on the live server, then follow the link the sign-up mails and press its button."""
    base = server.url
    http = requests.Session()
    csrf = http.get(f"{base}/api/csrf").json()["csrf_token"]
    resp = http.post(f"{base}/api/auth/register", json={"email": email, "password": "correct horse battery"},
                     headers={"X-CSRFToken": csrf})
    assert resp.status_code == 202, resp.text
    link = f"{base}{signup_link(server.app, email)}"
    assert http.get(link).status_code == 200
    confirmed = http.post(link, data={"csrf_token": csrf}, allow_redirects=False)
    assert confirmed.status_code == 302, confirmed.text
    http.headers["X-CSRFToken"] = csrf
    return http


class Inbox:
    def __init__(self, client: socketio.Client) -> None:
        self.events: list[tuple[str, Any]] = []
        for name in ("update", "alert", "system_alert"):
            client.on(name, lambda data, name=name: self.events.append((name, data)))

    def of(self, name: str) -> list[Any]:
        return [d for n, d in self.events if n == name]


def test_live_updates_through_kafka_bridge_and_redis(kafka_settings: Settings, tmp_path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'rt.db'}"
    upgrade(url)
    settings = replace(kafka_settings, database_url=url)
    app = make_app(settings)
    server = live_server_factory(app)

    alice_http = register(server, "alice@example.com")
    bob_http = register(server, "bob@example.com")
    alice_id = alice_http.get(f"{server.url}/api/me").json()["id"]
    bob_id = bob_http.get(f"{server.url}/api/me").json()["id"]
    bob_token = bob_http.post(f"{server.url}/api/tokens", json={"name": "sio"}).json()["token"]

    anon = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        anon.connect(server.url, transports=["polling"], wait_timeout=10)
    forged = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        forged.connect(server.url, transports=["polling"], auth={"token": "tb_forged"}, wait_timeout=10)

    alice = socketio.Client(reconnection=False)
    alice_inbox = Inbox(alice)
    alice.connect(server.url, transports=["polling"], wait_timeout=10,
                  headers={"Cookie": f"session={alice_http.cookies['session']}"})
    bob = socketio.Client(reconnection=False)
    bob_inbox = Inbox(bob)
    bob.connect(server.url, transports=["polling"], auth={"token": bob_token}, wait_timeout=10)
    try:
        assert alice.call("join", {"symbol": "aapl"}, timeout=10) == {"ok": True, "room": "symbol:AAPL"}
        assert alice.call("join", {"symbol": "not a symbol"}, timeout=10)["ok"] is False
        assert bob.call("join_user", {"user_id": alice_id}, timeout=10) == {"ok": False, "error": "forbidden"}
        assert bob.call("join_user", {"user_id": bob_id}, timeout=10)["ok"] is True

        shutdown = ShutdownFlag()
        counts: dict[str, int] = {}
        bridge = threading.Thread(target=lambda: counts.update(run_bridge(
            settings, shutdown, channel=app.config["SOCKETIO_CHANNEL"], group_id=f"bridge-{uuid.uuid4().hex[:8]}",
            offset_reset="earliest", redis_prefix=app.config["REDIS_PREFIX"])), daemon=True)
        bridge.start()
        try:
            producer = EventProducer(settings)
            now_ms = int(time.time() * 1000)
            started = time.monotonic()
            for i in range(300):
                producer.produce(tick("AAPL", i, 100.0 + i / 100, now_ms + i))
            producer.produce(tick("MSFT", 1, 55.0, now_ms))
            producer.produce(bar("AAPL", now_ms - 60_000, 102.5, sma_5=101.0))
            producer.produce(alert(11, alice_id, "AAPL", now_ms, 102.9, 102.0))
            producer.produce(alert(12, bob_id, "MSFT", now_ms, 55.0, 54.0))
            producer.flush()

            last_price = 100.0 + 299 / 100
            wait_for(lambda: any(u["price"] == last_price for u in alice_inbox.of("update")), what="the latest AAPL price")
            wait_for(lambda: any(u["bars"] for u in alice_inbox.of("update")), what="the AAPL bar")
            wait_for(lambda: alice_inbox.of("alert") and bob_inbox.of("alert"), what="both alerts")
            elapsed_s = time.monotonic() - started
        finally:
            shutdown.set()
            bridge.join(30)
        updates = alice_inbox.of("update")
        assert {u["symbol"] for u in updates} == {"AAPL"}  # MSFT was not joined
        assert len(updates) <= elapsed_s / 0.1 + 2  # coalesced: 300 ticks, about 10 updates per second at most
        assert len(updates) < 300
        assert [b["close"] for u in updates for b in u["bars"]] == [102.5]
        assert [a["rule_id"] for a in alice_inbox.of("alert")] == [11]
        assert [a["rule_id"] for a in bob_inbox.of("alert")] == [12]  # nobody sees another user's alert
        assert bob_inbox.of("update") == []
        assert counts["alerts"] == 2
    finally:
        alice.disconnect()
        bob.disconnect()


def test_stale_sockets_are_those_whose_credential_changed() -> None:
    from web.realtime import SocketAuth, stale

    sockets = {"token-kept": SocketAuth(1, token_id=10), "token-gone": SocketAuth(1, token_id=11),
               "session-now": SocketAuth(1, nonce="n2"), "session-before": SocketAuth(1, nonce="n1"),
               "disabled": SocketAuth(2, token_id=20), "deleted": SocketAuth(3, nonce="x")}
    users = {1: (True, "n2"), 2: (False, "y")}
    assert sorted(stale(sockets, {10, 20}, users)) == ["deleted", "disabled", "session-before", "token-gone"]


def test_sockets_end_when_their_credential_is_revoked(base_settings: Settings, tmp_path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    """A revoked token's socket, a logged-out session's socket: disconnected, and they receive nothing more."""
    from web.bridge import redis_emitter
    from web.rooms import user_room

    url = f"sqlite:///{tmp_path / 'revoke.db'}"
    upgrade(url)
    settings = replace(base_settings, database_url=url)
    app = make_app(settings, SOCKET_RECHECK_S=0.2)
    server = live_server_factory(app)
    emit, manager = redis_emitter(settings, app.config["SOCKETIO_CHANNEL"])  # what the bridge emits through

    alice_http = register(server, "alice@example.com")
    alice_id = alice_http.get(f"{server.url}/api/me").json()["id"]
    revoked = alice_http.post(f"{server.url}/api/tokens", json={"name": "revoked"}).json()
    kept = alice_http.post(f"{server.url}/api/tokens", json={"name": "kept"}).json()

    clients: dict[str, socketio.Client] = {}
    inboxes: dict[str, Inbox] = {}
    for name, kw in (("session", {"headers": {"Cookie": f"session={alice_http.cookies['session']}"}}),
                     ("revoked", {"headers": {"Authorization": f"Bearer {revoked['token']}"}}),  # a header, or:
                     ("kept", {"auth": {"token": kept["token"]}})):
        client = socketio.Client(reconnection=False)
        inboxes[name] = Inbox(client)
        client.connect(server.url, transports=["polling"], wait_timeout=10, **kw)
        clients[name] = client
    try:
        now_ms = int(time.time() * 1000)
        emit("alert", {"rule_id": 1, "ts_ms": now_ms}, user_room(alice_id))
        wait_for(lambda: all(inboxes[n].of("alert") for n in clients), what="the first alert on every socket")

        assert alice_http.delete(f"{server.url}/api/tokens/{revoked['id']}").status_code == 204
        wait_for(lambda: not clients["revoked"].connected, timeout_s=10, what="the revoked token's socket to close")
        assert clients["session"].connected and clients["kept"].connected

        assert alice_http.post(f"{server.url}/api/auth/logout").status_code == 200
        wait_for(lambda: not clients["session"].connected, timeout_s=10, what="the logged-out session's socket to close")
        assert clients["kept"].connected

        emit("alert", {"rule_id": 2, "ts_ms": now_ms}, user_room(alice_id))
        wait_for(lambda: len(inboxes["kept"].of("alert")) == 2, what="the second alert on the kept socket")
        assert [a["rule_id"] for a in inboxes["revoked"].of("alert")] == [1]
        assert [a["rule_id"] for a in inboxes["session"].of("alert")] == [1]

        again = socketio.Client(reconnection=False)  # and neither credential opens a new one
        with pytest.raises(socketio.exceptions.ConnectionError):
            again.connect(server.url, transports=["polling"], auth={"token": revoked["token"]}, wait_timeout=10)
        with pytest.raises(socketio.exceptions.ConnectionError):
            again.connect(server.url, transports=["polling"], wait_timeout=10,
                          headers={"Cookie": f"session={alice_http.cookies.get('session', 'gone')}"})
    finally:
        for client in clients.values():
            client.disconnect()
        del manager
