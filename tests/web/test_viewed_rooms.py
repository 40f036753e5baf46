"""The viewed set (issue 17): web processes say which symbol rooms have a socket, the bridge emits only there.

Real Redis on loopback throughout (a unique prefix per test); the Kafka tests run
the bridge in a thread against a live server, and read what it publishes off the
Socket.IO message-queue channel, which is what every web process receives.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Iterator

import pytest
import redis
import socketio

from events.db import upgrade
from events.kafka import EventProducer, ShutdownFlag
from events.settings import Settings
from tests.support import free_port, wait_for
from tests.web.conftest import make_app
from tests.web.events_factory import alert, tick
from tests.web.test_realtime import Inbox, register
from web.bridge import ViewedSymbols, run_bridge
from web.realtime import viewed_rooms
from web.rooms import publish_viewed, read_viewed, viewed_key

TTL_S = 1.0
REFRESH_S = 0.2


@pytest.fixture
def rds(base_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(base_settings.redis_url)
    yield client
    client.close()


def test_entries_expire_and_a_shorter_ttl_never_cuts_another_short(rds: redis.Redis) -> None:
    prefix = f"tbtest:{uuid.uuid4().hex[:10]}:"
    try:
        publish_viewed(rds, prefix, ["AAPL", "MSFT"], now_s=1000.0, ttl_s=15)
        publish_viewed(rds, prefix, ["AAPL"], now_s=1001.0, ttl_s=2)  # another process, a shorter TTL
        assert read_viewed(rds, prefix, 1010.0) == {"AAPL", "MSFT"}
        assert read_viewed(rds, prefix, 1016.0) == set()  # both passed their expiry: nobody refreshed them
        publish_viewed(rds, prefix, ["NVDA"], now_s=1020.0, ttl_s=15)  # a refresh sweeps the expired ones
        assert read_viewed(rds, prefix, 0.0) == {"NVDA"}  # every member left, expired or not
    finally:
        rds.delete(viewed_key(prefix))


def test_the_bridge_reads_the_viewed_set_at_most_once_per_interval(rds: redis.Redis) -> None:
    prefix = f"tbtest:{uuid.uuid4().hex[:10]}:"
    clock = [0.0]
    viewed = ViewedSymbols(rds, prefix, every_s=1.0, clock=lambda: clock[0])
    try:
        assert viewed.get() == set()
        publish_viewed(rds, prefix, ["AAPL"], time.time())
        for _ in range(99):  # a batch every 10 ms for a second: the answer read at 0.0 stands
            clock[0] += 0.01
            assert viewed.get() == set()
        clock[0] = 1.0
        assert viewed.get() == {"AAPL"} and viewed.reads == 2
    finally:
        rds.delete(viewed_key(prefix))


def test_an_unreadable_viewed_set_means_every_symbol_logged_once(rds: redis.Redis,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=1, socket_connect_timeout=1)
    clock = [0.0]
    viewed = ViewedSymbols(dead, "tbtest:x:", every_s=1.0, clock=lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="web.bridge"):
        for i in range(3):
            clock[0] = float(i)
            assert viewed.get() is None  # emit everything rather than go dark
        viewed.client = rds  # Redis is back
        clock[0] = 5.0
        assert viewed.get() == set()
    assert viewed.reads == 4
    messages = [r.getMessage() for r in caplog.records if r.name == "web.bridge"]
    assert len(messages) == 2 and "cannot be read" in messages[0] and "readable again" in messages[1]


def test_a_process_publishes_its_joined_rooms_while_joined(base_settings: Settings, tmp_path: Any,
                                                           live_server_factory: Any, rds: redis.Redis) -> None:
    """Sockets of a live server: a join publishes, a room left by its last socket here expires."""
    url = f"sqlite:///{tmp_path / 'rooms.db'}"
    upgrade(url)
    app = make_app(replace(base_settings, database_url=url), VIEWED_TTL_S=TTL_S, VIEWED_REFRESH_S=REFRESH_S)
    prefix = app.config["REDIS_PREFIX"]
    server = live_server_factory(app)
    http = register(server, "alice@example.com")
    clients = []
    for _ in range(2):
        client = socketio.Client(reconnection=False)
        client.connect(server.url, transports=["polling"], wait_timeout=10,
                       headers={"Cookie": f"session={http.cookies['session']}"})
        clients.append(client)
    one, two = clients
    try:
        assert read_viewed(rds, prefix, time.time()) == set()
        assert one.call("join", {"symbol": "aapl"}, timeout=10)["ok"] is True
        joined_at = time.time()
        wait_for(lambda: "AAPL" in read_viewed(rds, prefix, time.time()), timeout_s=2, what="AAPL published")
        assert two.call("join", {"symbol": "AAPL"}, timeout=10)["ok"] is True
        assert two.call("join", {"symbol": "MSFT"}, timeout=10)["ok"] is True
        wait_for(lambda: "MSFT" in read_viewed(rds, prefix, time.time()), timeout_s=2, what="MSFT published")

        assert one.call("leave", {"symbol": "AAPL"}, timeout=10) == {"ok": True}
        # the other socket keeps AAPL: its entry is refreshed past the expiry the first join gave it
        wait_for(lambda: (rds.zscore(viewed_key(prefix), "AAPL") or 0) > joined_at + TTL_S + REFRESH_S, timeout_s=5,
                 what="AAPL refreshed while a socket is still in its room")
        assert "AAPL" in read_viewed(rds, prefix, time.time())

        assert two.call("leave", {"symbol": "AAPL"}, timeout=10) == {"ok": True}
        wait_for(lambda: read_viewed(rds, prefix, time.time()) == {"MSFT"}, timeout_s=TTL_S + 3,
                 what="AAPL to expire once no socket is in its room")
        two.disconnect()
        wait_for(lambda: read_viewed(rds, prefix, time.time()) == set(), timeout_s=TTL_S + 3,
                 what="MSFT to expire after its socket disconnected")
        wait_for(lambda: not viewed_rooms(app).publishing, timeout_s=2, what="the refresh task to end")
        assert viewed_rooms(app).symbols() == set()
    finally:
        for client in clients:
            client.disconnect()
        rds.delete(viewed_key(prefix))


class ChannelSpy:
    """What the bridge publishes on the Socket.IO message-queue channel: (received at, event, payload)."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.sub = client.pubsub()  # type: ignore[no-untyped-call]
        self.sub.subscribe(channel)
        self.seen: list[tuple[float, str, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.stop.is_set():
            msg = self.sub.get_message(timeout=0.1)
            if msg and msg["type"] == "message":
                body = json.loads(msg["data"])
                self.seen.append((time.monotonic(), body.get("event", ""), body["data"][0]))

    def updates_of(self, symbol: str, since: float = 0.0) -> list[float]:
        return [at for at, event, data in list(self.seen) if event == "update" and data["symbol"] == symbol and at >= since]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sub.close()


def _feed(settings: Settings, symbols: list[str], stop: threading.Event) -> threading.Thread:
    """Ticks of every symbol about 25 times a second until ``stop`` (a load, not a synchronisation)."""

    def run() -> None:
        producer = EventProducer(settings)
        seq = 0
        while not stop.is_set():
            now_ms = int(time.time() * 1000)
            for symbol in symbols:
                producer.produce(tick(symbol, seq, 100.0 + seq % 100, now_ms))
            seq += 1
            producer.flush()
            stop.wait(0.04)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_bridge_emits_market_data_only_to_viewed_rooms(kafka_settings: Settings, tmp_path: Any,
                                                           live_server_factory: Any, rds: redis.Redis) -> None:
    url = f"sqlite:///{tmp_path / 'viewed.db'}"
    upgrade(url)
    settings = replace(kafka_settings, database_url=url)
    app = make_app(settings, VIEWED_TTL_S=TTL_S, VIEWED_REFRESH_S=REFRESH_S)
    server = live_server_factory(app)
    alice_http = register(server, "alice@example.com")
    alice_id = alice_http.get(f"{server.url}/api/me").json()["id"]
    spy = ChannelSpy(rds, app.config["SOCKETIO_CHANNEL"])
    shutdown, stop_feed = ShutdownFlag(), threading.Event()
    counts: dict[str, int] = {}
    bridge = threading.Thread(target=lambda: counts.update(run_bridge(
        settings, shutdown, channel=app.config["SOCKETIO_CHANNEL"], group_id=f"bridge-{uuid.uuid4().hex[:8]}",
        offset_reset="latest", redis_prefix=app.config["REDIS_PREFIX"])), daemon=True)
    alice = socketio.Client(reconnection=False)
    inbox = Inbox(alice)
    alice.connect(server.url, transports=["polling"], wait_timeout=10,
                  headers={"Cookie": f"session={alice_http.cookies['session']}"})
    feed: threading.Thread | None = None
    try:
        bridge.start()
        assert alice.call("join", {"symbol": "AAPL"}, timeout=10)["ok"] is True
        feed = _feed(settings, ["AAPL", "MSFT"], stop_feed)
        wait_for(lambda: inbox.of("update"), timeout_s=30, what="AAPL updates at the socket")
        wait_for(lambda: len(spy.updates_of("AAPL")) >= 10, timeout_s=10, what="ten AAPL updates")
        assert spy.updates_of("MSFT") == []  # ticking all along, watched by nobody: nothing published

        joined = time.monotonic()
        assert alice.call("join", {"symbol": "MSFT"}, timeout=10)["ok"] is True
        wait_for(lambda: spy.updates_of("MSFT"), timeout_s=3, what="MSFT updates within seconds of the join")
        assert spy.updates_of("MSFT")[0] - joined < 2.5
        wait_for(lambda: any(u["symbol"] == "MSFT" for u in inbox.of("update")), timeout_s=5, what="MSFT at the socket")

        assert alice.call("leave", {"symbol": "MSFT"}, timeout=10) == {"ok": True}
        left = time.monotonic()
        # the entry expires within TTL_S; the bridge's read of the set after that sees it gone
        wait_for(lambda: not spy.updates_of("MSFT", since=time.monotonic() - 1.0) and time.monotonic() - left > 1.0,
                 timeout_s=TTL_S + 6, what="MSFT updates to stop after the leave")
        stopped = time.monotonic()
        wait_for(lambda: spy.updates_of("AAPL", since=stopped), timeout_s=5, what="AAPL still flowing")

        producer = EventProducer(settings)
        producer.produce(alert(7, alice_id, "TSLA", int(time.time() * 1000), 1.0, 1.0))  # a room nobody joined
        producer.produce(alert(0, 0, "NFLX", int(time.time() * 1000), 1.0, 1.0))
        producer.flush()
        wait_for(lambda: inbox.of("alert"), timeout_s=10, what="the alert in the user's room")
        wait_for(lambda: any(e == "system_alert" and d["symbol"] == "NFLX" for _a, e, d in spy.seen), timeout_s=10,
                 what="the system alert of an unviewed symbol")
        assert [a["rule_id"] for a in inbox.of("alert")] == [7]
        assert not spy.updates_of("MSFT", since=stopped) and not spy.updates_of("TSLA")
    finally:
        stop_feed.set()
        if feed is not None:
            feed.join(10)
        shutdown.set()
        bridge.join(30)
        alice.disconnect()
        spy.close()
        rds.delete(viewed_key(app.config["REDIS_PREFIX"]))
    assert counts["alerts"] == 2


def test_a_redis_outage_falls_back_to_emitting_every_symbol(kafka_settings: Settings, caplog: pytest.LogCaptureFixture,
                                                            tmp_path: Any) -> None:
    """The bridge's Redis (viewed set and heartbeats) is a private redis-server on loopback, stopped mid-run."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    private = redis.Redis(host="127.0.0.1", port=port)
    shutdown, stop_feed = ShutdownFlag(), threading.Event()
    emitted: list[tuple[str, dict[str, Any], str]] = []
    settings = replace(kafka_settings, redis_url=f"redis://127.0.0.1:{port}/0")
    prefix = "tbtest:outage:"
    bridge = threading.Thread(target=run_bridge, args=(settings, shutdown), daemon=True, kwargs={
        "group_id": f"bridge-{uuid.uuid4().hex[:8]}", "offset_reset": "earliest", "redis_prefix": prefix,
        "viewed_every_s": 0.2, "emit": lambda event, payload, room: emitted.append((event, payload, room))})
    feed: threading.Thread | None = None
    try:
        wait_for(lambda: _pings(private), timeout_s=10, what="the private redis-server")
        publish_viewed(private, prefix, ["AAPL"], time.time(), ttl_s=600)
        with caplog.at_level(logging.WARNING, logger="web.bridge"):
            bridge.start()
            feed = _feed(settings, ["AAPL", "MSFT"], stop_feed)
            wait_for(lambda: sum(1 for e, _p, r in emitted if r == "symbol:AAPL") >= 5, timeout_s=30,
                     what="AAPL updates")
            assert not [r for _e, _p, r in emitted if r == "symbol:MSFT"]
            proc.terminate()
            proc.wait(10)
            wait_for(lambda: sum(1 for _e, _p, r in emitted if r == "symbol:MSFT") >= 3, timeout_s=15,
                     what="MSFT updates once the viewed set cannot be read")
        warnings = [r.getMessage() for r in caplog.records if r.name == "web.bridge"]
        assert len(warnings) == 1 and "cannot be read" in warnings[0]  # logged once, not every second
    finally:
        stop_feed.set()
        if feed is not None:
            feed.join(10)
        shutdown.set()
        bridge.join(30)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_the_key_lives_as_long_as_its_longest_entry(rds: redis.Redis) -> None:
    prefix = f"tbtest:{uuid.uuid4().hex[:10]}:"
    try:
        publish_viewed(rds, prefix, ["AAPL"], time.time(), ttl_s=30)
        publish_viewed(rds, prefix, ["MSFT"], time.time(), ttl_s=2)  # a shorter TTL does not shorten the key's
        assert 25 < rds.ttl(viewed_key(prefix)) <= 30
    finally:
        rds.delete(viewed_key(prefix))
