"""The end-to-end benchmark's load and observers (bench/e2e.py drives them).

The load: 10,000 rules over 1,000 symbols (10 per symbol; 300 of them, three on
each of the first 100 symbols, cross the symbol's base price and fire to a
loopback webhook, every time with a 10 s cooldown; the rest never fire) and a
paced random walk of ticks produced with the ingest process's own producer
settings (``EventProducer(settings)``), in place of ``ingest``.

The observers, each a thread of this process stamping wall-clock arrival
times in one :class:`Book`: the ``alerts`` topic (read_committed), the
``metrics`` topic, the engine group's lag on ``ticks``, a loopback webhook
receiver, and a python-socketio client in the rooms of ten symbols (the
browser). Every sample carries the probe it belongs to (``Book.probe``), taken
from the tick that caused it, so a late arrival counts for its own probe.
"""

from __future__ import annotations

import http.server
import random
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import msgspec
from confluent_kafka import Consumer, TopicPartition

from events import contract
from events.kafka import EventProducer, consumer_config
from events.settings import Settings

N_SYMBOLS = 1000
RULES_PER_SYMBOL = 10
FIRING_SYMBOLS = 100
PARTITIONS = 2
BAR_SECONDS = 1
LATENESS_MS = 500
COOLDOWN_S = 10
ROOM_SYMBOLS = [f"S{i:04d}" for i in range(10)]  # the browser: enough updates for a p99 within a probe
PROCESSES = ["relay", "projector", "bridge", "dispatch", "worker", "alerts", "stream", "web"]
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WARMUP = -1  # the probe number of warm-up and settling ticks: never measured


def base_price(i: int) -> float:
    return 50.0 + (i % 200)


def make_rules(channel_id: int, user_id: int) -> list[contract.Rule]:
    rules: list[contract.Rule] = []
    for i in range(N_SYMBOLS):
        p = base_price(i)
        quiet: list[dict[str, Any]] = [
            {"series": "price", "op": "greater_than", "value": p * 100},
            {"series": "price", "op": "less_than", "value": p * 0.01},
            {"series": "price", "op": "crossing", "value": p * 50},
            {"series": "price", "op": "crossing_up", "value": p * 60},
            {"series": "price", "op": "crossing_down", "value": p * 0.02},
            {"series": "price", "op": "entering_channel", "lower": p * 10, "upper": p * 11},
            {"series": "price", "op": "outside_channel", "lower": p * 0.01, "upper": p * 100},
            {"series": "price", "op": "moving_up_pct", "value": 500.0, "window_s": 10},
            {"series": "price", "op": "moving_down_pct", "value": 90.0, "window_s": 10},
            {"series": "price", "op": "greater_than", "value": p * 200},
        ]
        firing = [{"series": "price", "op": op, "value": p} for op in ("crossing", "crossing_up", "crossing_down")]
        conds = (firing + quiet[:RULES_PER_SYMBOL - 3]) if i < FIRING_SYMBOLS else quiet[:RULES_PER_SYMBOL]
        for k, cond in enumerate(conds):
            rid = i * RULES_PER_SYMBOL + k + 1
            fires = i < FIRING_SYMBOLS and k < 3
            rules.append(msgspec.convert({
                "type": "rule", "id": f"rule:{rid}:1", "ts": int(time.time() * 1000), "rule_id": rid, "version": 1,
                "user_id": user_id, "symbols": [f"S{i:04d}"], "condition": cond, "frequency": "every_time",
                "cooldown_s": COOLDOWN_S if fires else 0, "channel_ids": [channel_id] if fires else []},
                contract.Rule))
    return rules


@dataclass
class Book:
    """What was sent when and what arrived when (wall-clock seconds), by probe number."""

    probe: int = WARMUP
    sent: dict[str, tuple[float, int]] = field(default_factory=dict)        # tick id -> (t, probe)
    closing: dict[int, tuple[float, int]] = field(default_factory=dict)     # bar end ms -> (t closing tick, probe)
    alerts: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # alert id -> (t tick, t alert, probe)
    hooks: dict[str, float] = field(default_factory=dict)                   # alert id -> t received
    socket: list[tuple[int, float]] = field(default_factory=list)           # (probe, latency ms)
    bars: list[tuple[int, float, float, int]] = field(default_factory=list)  # (probe, ms from closing tick, ms from end, end ms)
    lag: list[tuple[int, float, int]] = field(default_factory=list)         # (probe, t, engine lag)
    counts: Counter[tuple[int, str]] = field(default_factory=Counter)       # (probe, path) -> samples so far
    windows: dict[int, tuple[int, int]] = field(default_factory=dict)       # probe -> (first, last tick ts ms)
    newest_bar_end_ms: int = 0
    alert_events: int = 0
    hook_posts: int = 0
    socket_updates: int = 0
    socket_connects: int = 0
    socket_disconnects: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forget(self, probe: int) -> None:
        """Drop a summarised probe's samples (a long search would otherwise hold millions of tick ids)."""
        with self.lock:
            self.sent = {k: v for k, v in self.sent.items() if v[1] > probe}
            self.closing = {k: v for k, v in self.closing.items() if v[1] > probe}
            gone = [k for k, v in self.alerts.items() if v[2] <= probe]
            for k in gone:
                self.alerts.pop(k, None)
                self.hooks.pop(k, None)
            self.socket = [s for s in self.socket if s[0] > probe]
            self.bars = [b for b in self.bars if b[0] > probe]

    def probe_of(self, ts_ms: int) -> int:
        """The probe whose ticks carry this timestamp (an update that arrives late still counts for its probe)."""
        for probe, (first, last) in list(self.windows.items()):
            if first <= ts_ms <= last:
                return probe
        return WARMUP


def _reader(settings: Settings, topic: str, max_batch: int, handle: Callable[[bytes, float], None],
            stop: threading.Event) -> None:
    consumer = Consumer(consumer_config(settings, f"bench-e2e-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 5}))
    consumer.subscribe([settings.topic(topic)])
    try:
        while not stop.is_set():
            first = consumer.poll(0.1)  # returns at the first message (consume() would wait out its timeout)
            if first is None:
                continue
            for m in [first, *consumer.consume(max_batch, 0)]:
                if m.error() is None:
                    handle(m.value() or b"", time.time())
    finally:
        consumer.close()


def read_alerts(settings: Settings, book: Book, stop: threading.Event) -> None:
    decoder = msgspec.json.Decoder(contract.Alert)

    def handle(value: bytes, now: float) -> None:
        try:
            a = decoder.decode(value)
        except msgspec.ValidationError:
            return
        book.alert_events += 1
        sent = book.sent.get(a.trigger_event_id) if a.state == "firing" else None
        if sent is not None:
            book.alerts[a.id] = (sent[0], now, sent[1])
            book.counts[(sent[1], "alert")] += 1

    _reader(settings, "alerts", 1000, handle, stop)


def read_metrics(settings: Settings, book: Book, stop: threading.Event) -> None:
    decoder = msgspec.json.Decoder(contract.Bar)

    def handle(value: bytes, now: float) -> None:
        try:
            bar = decoder.decode(value)
        except msgspec.ValidationError:
            return
        end_ms = bar.start_ms + bar.bar_seconds * 1000
        book.newest_bar_end_ms = max(book.newest_bar_end_ms, end_ms)
        closing = book.closing.get(end_ms)
        if closing is not None:
            book.bars.append((closing[1], (now - closing[0]) * 1000, now * 1000 - end_ms, end_ms))
            book.counts[(closing[1], "bar")] += 1

    _reader(settings, "metrics", 2000, handle, stop)


def engine_lag(probe: Consumer, topic: str) -> int:
    """The engine group's lag on ``topic``: high watermarks minus committed offsets, summed."""
    lag = 0
    for tp in probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5):
        high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=5, cached=False)[1]
        lag += high - max(tp.offset, 0)
    return lag


def sample_lag(settings: Settings, group: str, book: Book, stop: threading.Event,
               each_second: Callable[[], object]) -> None:
    probe = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        while not stop.wait(1.0):
            each_second()
            try:
                lag = engine_lag(probe, settings.topic("ticks"))
            except Exception:  # noqa: BLE001 - a missed sample is not fatal to the benchmark
                continue
            book.lag.append((book.probe, time.time(), lag))
    finally:
        probe.close()


def start_receiver(book: Book) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            now = time.time()
            aid = self.headers.get("webhook-id", "").rsplit(".c", 1)[0]
            with book.lock:
                book.hook_posts += 1
                if aid not in book.hooks:
                    book.hooks[aid] = now
                    fired = book.alerts.get(aid)
                    if fired is not None:
                        book.counts[(fired[2], "webhook")] += 1
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def join_rooms(client: Any) -> None:
    for sym in ROOM_SYMBOLS:
        answer = client.call("join", {"symbol": sym}, timeout=10)
        if not (isinstance(answer, dict) and answer.get("ok")):
            raise RuntimeError(f"could not join the room of {sym}: {answer}")


def connect_browser(port: int, token: str, book: Book) -> Any:
    import socketio

    client = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1)

    @client.on("update")  # type: ignore[untyped-decorator]
    def on_update(data: dict[str, Any]) -> None:
        ts_ms = data.get("ts_ms") if isinstance(data, dict) else None
        book.socket_updates += 1
        if not isinstance(ts_ms, int) or data.get("price") is None:
            return
        probe = book.probe_of(ts_ms)
        if probe != WARMUP:
            book.socket.append((probe, time.time() * 1000 - ts_ms))
            book.counts[(probe, "browser")] += 1

    @client.on("connect")  # type: ignore[untyped-decorator]
    def on_connect() -> None:
        book.socket_connects += 1
        if book.socket_connects > 1:  # a reconnect: rooms are per connection, join them again
            threading.Thread(target=join_rooms, args=(client,), daemon=True).start()

    @client.on("disconnect")  # type: ignore[untyped-decorator]
    def on_disconnect(*reason: Any) -> None:
        book.socket_disconnects.append(f"{time.time():.1f} probe {book.probe}: {reason}")

    client.connect(f"http://127.0.0.1:{port}", auth={"token": token}, wait_timeout=20)
    join_rooms(client)
    return client


class Walk:
    """Random-walk prices around each symbol's base price (0.2 % steps, pulled back to base)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.price = [base_price(i) for i in range(N_SYMBOLS)]
        self.seq = 0

    def next(self, n_symbols: int, ts_ms: int) -> tuple[int, contract.Tick]:
        i = self.seq % n_symbols
        p = self.price[i]
        p += p * 0.002 * self.rng.uniform(-1, 1) + (base_price(i) - p) * 0.05
        self.price[i] = p
        self.seq += 1
        return i, contract.Tick(id=f"e2e:S{i:04d}:{self.seq}", ts=ts_ms, symbol=f"S{i:04d}", price=round(p, 4),
                                size=1.0, source="bench", seq=self.seq)


def produce(producer: EventProducer, walk: Walk, book: Book, rate: int, probe: int,
            until: Callable[[float], bool]) -> tuple[int, float]:
    """Ticks over 1,000 symbols at ``rate``/s, paced in 10 ms slices, until ``until(elapsed_s)`` (asked each second).

    Records the production time of each tick that can fire a rule and, for each bar end, the first
    tick that closes it (bar end + lateness). Returns (ticks produced, seconds).
    """
    chunk = max(1, rate // 100)
    start = time.time()
    produced = 0
    if probe != WARMUP:
        book.windows[probe] = (int(start * 1000), 2**62)
    next_close = ((int(start * 1000) - LATENESS_MS) // (BAR_SECONDS * 1000) + 1) * BAR_SECONDS * 1000
    k = 0
    while k % 100 or not until(time.time() - start):
        delay = start + k / 100 - time.time()
        if delay > 0:
            time.sleep(delay)  # pacing the offered load
        now = time.time()
        now_ms = int(now * 1000)
        if now_ms - LATENESS_MS >= next_close:
            book.closing[next_close] = (now, probe)  # this slice's first tick closes the bar ending at next_close
            next_close = ((now_ms - LATENESS_MS) // (BAR_SECONDS * 1000) + 1) * BAR_SECONDS * 1000
        for _ in range(chunk):
            i, t = walk.next(N_SYMBOLS, now_ms)
            if i < FIRING_SYMBOLS and probe != WARMUP:
                book.sent[t.id] = (now, probe)
            producer.produce(t)
        produced += chunk
        k += 1
    if probe != WARMUP:
        book.windows[probe] = (book.windows[probe][0], int(time.time() * 1000))
    producer.flush()
    return produced, time.time() - start


def seed_database(url: str, receiver_port: int) -> tuple[int, int, str]:
    """A user with an API token (the browser's) and a webhook channel to the receiver: (user, channel, token)."""
    from sqlalchemy.orm import Session

    from events import models
    from events.db import make_engine
    from web.auth import hash_token, new_token

    engine = make_engine(url)
    token = new_token()
    with Session(engine) as s:
        user = models.User(email="bench-e2e@example.com", password_hash="x")
        s.add(user)
        s.flush()
        s.add(models.ApiToken(user_id=user.id, name="bench", token_hash=hash_token(token)))
        ch = models.Channel(user_id=user.id, kind="webhook", name="bench-receiver",
                            target=f"http://127.0.0.1:{receiver_port}/hook", secret=WHSEC)
        s.add(ch)
        s.commit()
        ids = (user.id, ch.id)
    engine.dispose()
    return ids[0], ids[1], token


def web_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
