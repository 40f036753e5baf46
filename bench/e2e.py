"""End-to-end benchmark of the running stack (``make bench`` -> bench/results/e2e.json).

One stack of real Procfile processes (tests/e2e/stack.py: its own topic
prefix, SQLite database, var folder and Celery queue): ``stream`` (Spark,
1-second bars, 500 ms lateness), ``alerts`` (engine), ``dispatch``,
``worker``, ``bridge``, ``projector``, ``relay`` and ``web`` (the Procfile's
gunicorn line). ``ingest`` is replaced by this module's paced producer, so the
offered rate is known; ``predict`` is left out (TensorFlow would take a core
of the two this machine has, and no latency here goes through it).

10,000 rules (10 per symbol over 1,000 symbols) go straight to the stack's
``rules`` topic; 9,700 are set far from any price and never fire; 300
(three per symbol on the first 100 symbols: crossings of the symbol's base
price, every time with a 10 s cooldown) fire a few dozen times a second and
notify a webhook channel pointing at a loopback HTTP receiver
(``ALLOW_PRIVATE_WEBHOOKS=true``). A python-socketio client logged in with an
API token joins the rooms of five symbols.

For each step (100 and 1,000 symbols x 1k, 5k, 20k ticks/s; 50k when 20k was
sustained), measured over ``STEP_S`` seconds:

* sustained: the engine group's consumer lag on ``ticks`` (sampled each
  second) does not grow, and the producer reached the offered rate;
* latency tick produced -> firing alert on ``alerts`` (read_committed),
  tick -> webhook received, tick -> Socket.IO ``update`` in the browser client
  (includes the bridge's 100 ms coalescing), bar close -> metrics event
  (from the production of the watermark-closing tick, and from the bar end);
* CPU (cores) and peak RSS of each process, its whole process tree summed
  (from /proc).

Then, in the same run after the stack is stopped, the ceiling: a bare
confluent-kafka produce + consume round trip of the same tick messages on the
same broker (unpaced for throughput, paced at 20k/s for latency).
"""

from __future__ import annotations

import http.server
import os
import random
import shutil
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from bench.common import percentiles, write_result
from events import contract
from events.kafka import EventProducer, admin_client, consumer_config, producer_config
from events.settings import Settings, load_settings
from tests.e2e.stack import Stack, free_port, procfile, wait_for

N_SYMBOLS_MAX = 1000
RULES_PER_SYMBOL = 10
FIRING_SYMBOLS = 100
SYMBOL_SETS = (100, 1000)
RATES = (1000, 5000, 20000)
EXTRA_RATE = 50000
STEP_S = 15.0
SETTLE_S = 12.0
PARTITIONS = 2
BAR_SECONDS = 1
LATENESS_MS = 500
COOLDOWN_S = 10
ROOM_SYMBOLS = [f"S{i:04d}" for i in range(5)]
PROCESSES = ["relay", "projector", "bridge", "dispatch", "worker", "alerts", "stream", "web"]
CEILING_TICKS = 200_000
CEILING_PACED_RATE = 20000
CEILING_PACED_S = 5.0
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
COMMAND = "PYTHONPATH=. .venv/bin/python -m bench e2e"


def base_price(i: int) -> float:
    return 50.0 + (i % 200)


def make_rules(channel_id: int, user_id: int) -> list[contract.Rule]:
    rules: list[contract.Rule] = []
    for i in range(N_SYMBOLS_MAX):
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


# --- measurements shared by the reader threads -------------------------------------------------


@dataclass
class Book:
    """What was sent when, and what arrived when (wall-clock seconds, one process)."""

    step: int = -1
    sent: dict[str, tuple[float, int]] = field(default_factory=dict)        # tick id -> (t, step)
    closing: dict[int, tuple[float, int]] = field(default_factory=dict)     # bar end ms -> (t closing tick, step)
    alerts: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # alert id -> (t tick, t alert, step)
    hooks: dict[str, float] = field(default_factory=dict)                   # alert id -> t received
    hook_posts: int = 0
    socket: list[tuple[int, float]] = field(default_factory=list)           # (step, latency ms)
    bars: list[tuple[int, float, float]] = field(default_factory=list)      # (step, ms from closing tick, ms from bar end)
    lag: list[tuple[int, float, int]] = field(default_factory=list)         # (step, t, engine lag)
    alert_events: int = 0
    socket_updates: int = 0
    socket_connects: int = 0
    socket_disconnects: list[str] = field(default_factory=list)
    resolved: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def read_alerts(settings: Settings, book: Book, stop: threading.Event) -> None:
    consumer = Consumer(consumer_config(settings, f"bench-e2e-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 5}))
    consumer.subscribe([settings.topic("alerts")])
    decoder = msgspec.json.Decoder(contract.Alert)
    try:
        while not stop.is_set():
            first = consumer.poll(0.1)
            if first is None:
                continue
            for m in [first, *consumer.consume(1000, 0)]:
                if m.error() is not None:
                    continue
                now = time.time()
                try:
                    a = decoder.decode(m.value() or b"")
                except msgspec.ValidationError:
                    continue
                book.alert_events += 1
                if a.state != "firing":
                    book.resolved += 1
                    continue
                sent = book.sent.get(a.trigger_event_id)
                if sent is not None:
                    book.alerts[a.id] = (sent[0], now, sent[1])
    finally:
        consumer.close()


def read_metrics(settings: Settings, book: Book, stop: threading.Event) -> None:
    consumer = Consumer(consumer_config(settings, f"bench-e2e-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 5}))
    consumer.subscribe([settings.topic("metrics")])
    decoder = msgspec.json.Decoder(contract.Bar)
    try:
        while not stop.is_set():
            first = consumer.poll(0.1)
            if first is None:
                continue
            for m in [first, *consumer.consume(2000, 0)]:
                if m.error() is not None:
                    continue
                now = time.time()
                try:
                    bar = decoder.decode(m.value() or b"")
                except msgspec.ValidationError:
                    continue
                end_ms = bar.start_ms + bar.bar_seconds * 1000
                closing = book.closing.get(end_ms)
                if closing is not None:
                    book.bars.append((closing[1], (now - closing[0]) * 1000, now * 1000 - end_ms))
    finally:
        consumer.close()


def sample_lag(settings: Settings, group: str, book: Book, stop: threading.Event, procs: "ProcSampler") -> None:
    probe = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    topic = settings.topic("ticks")
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        while not stop.wait(1.0):
            procs.sample()
            try:
                committed = probe.committed(parts, timeout=5)
                lag = 0
                for tp in committed:
                    high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=5, cached=False)[1]
                    lag += high - max(tp.offset, 0)
            except Exception:  # noqa: BLE001 - a missed sample is not fatal to the benchmark
                continue
            book.lag.append((book.step, time.time(), lag))
    finally:
        probe.close()


def start_receiver(book: Book) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            now = time.time()
            with book.lock:
                book.hook_posts += 1
                book.hooks.setdefault(self.headers.get("webhook-id", "").rsplit(".c", 1)[0], now)
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

    @client.on("update")
    def on_update(data: dict[str, Any]) -> None:
        ts_ms = data.get("ts_ms") if isinstance(data, dict) else None
        book.socket_updates += 1
        if ts_ms and data.get("price") is not None and book.step >= 0:
            book.socket.append((book.step, time.time() * 1000 - ts_ms))

    @client.on("connect")
    def on_connect() -> None:
        book.socket_connects += 1
        if book.socket_connects > 1:  # a reconnect: rooms are per connection, join them again
            threading.Thread(target=join_rooms, args=(client,), daemon=True).start()

    @client.on("disconnect")
    def on_disconnect(*reason: Any) -> None:
        book.socket_disconnects.append(f"{time.time():.1f} step {book.step}: {reason}")

    client.connect(f"http://127.0.0.1:{port}", auth={"token": token}, wait_timeout=20)
    join_rooms(client)
    return client


# --- per-process CPU and memory from /proc -----------------------------------------------------


class ProcSampler:
    """CPU seconds and RSS of each stack process, its whole process tree summed (Spark's JVM included)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.tick_hz = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.last: dict[str, tuple[float, float, int]] = {}   # name -> (t, cpu_s, rss)
        self.peak: dict[str, int] = {}
        self.lock = threading.Lock()

    def _tree(self) -> dict[int, tuple[int, float, int]]:
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ppid, utime, stime, rss_pages = int(fields[1]), int(fields[11]), int(fields[12]), int(fields[21])
            out[int(entry)] = (ppid, (utime + stime) / self.tick_hz, rss_pages * self.page)
        return out

    def sample(self) -> dict[str, tuple[float, float, int]]:
        procs = self._tree()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        now = time.time()
        current = {}
        for name, root in self.roots.items():
            todo, cpu, rss = [root], 0.0, 0
            while todo:
                pid = todo.pop()
                if pid in procs:
                    cpu += procs[pid][1]
                    rss += procs[pid][2]
                    todo.extend(children.get(pid, []))
            current[name] = (now, cpu, rss)
        with self.lock:
            self.last = current
            for name, (_, _, rss) in current.items():
                self.peak[name] = max(self.peak.get(name, 0), rss)
        return current

    def reset_peaks(self) -> None:
        with self.lock:
            self.peak = {}


def usage(before: dict[str, tuple[float, float, int]], after: dict[str, tuple[float, float, int]],
          peak: dict[str, int]) -> dict[str, dict[str, float | None]]:
    out = {}
    for name, (t1, cpu1, rss1) in after.items():
        t0, cpu0, _ = before.get(name, (t1, cpu1, rss1))
        out[name] = {"cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 2) if t1 > t0 else None,
                     "rss_mib_peak": round(max(peak.get(name, 0), rss1) / 2**20, 1)}
    return out


# --- the offered load --------------------------------------------------------------------------


class Walk:
    """Random-walk prices around each symbol's base price (0.2 % steps, pulled back to base)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.price = [base_price(i) for i in range(N_SYMBOLS_MAX)]
        self.seq = 0

    def next(self, n_symbols: int, ts_ms: int) -> contract.Tick:
        i = self.seq % n_symbols
        p = self.price[i]
        p += p * 0.002 * self.rng.uniform(-1, 1) + (base_price(i) - p) * 0.05
        self.price[i] = p
        self.seq += 1
        return contract.Tick(id=f"e2e:S{i:04d}:{self.seq}", ts=ts_ms, symbol=f"S{i:04d}", price=round(p, 4),
                             size=1.0, source="bench", seq=self.seq)


def produce(producer: EventProducer, walk: Walk, book: Book, n_symbols: int, rate: int, seconds: float,
            step: int, record: bool = True) -> tuple[int, float]:
    """Paced in 10 ms slices; records each tick's production time and each bar end's closing tick."""
    chunk = max(1, rate // 100)
    start = time.time()
    produced = 0
    next_close = ((int(start * 1000) - LATENESS_MS) // (BAR_SECONDS * 1000) + 1) * BAR_SECONDS * 1000
    for k in range(int(seconds * 100)):
        delay = start + k / 100 - time.time()
        if delay > 0:
            time.sleep(delay)  # pacing the offered load
        now = time.time()
        now_ms = int(now * 1000)
        if record and now_ms - LATENESS_MS >= next_close:
            book.closing[next_close] = (now, step)  # this slice's first tick closes the bar ending at next_close
            next_close = ((now_ms - LATENESS_MS) // (BAR_SECONDS * 1000) + 1) * BAR_SECONDS * 1000
        for _ in range(chunk):
            t = walk.next(n_symbols, now_ms)
            if record:
                book.sent[t.id] = (now, step)
            producer.produce(t)
        producer.raw.poll(0)
        produced += chunk
    producer.flush()
    return produced, time.time() - start


def lag_summary(samples: list[tuple[float, int]], rate: int, t_end: float) -> dict[str, Any]:
    during = [(t, lag) for t, lag in samples if t <= t_end + 0.5]
    after = [(t, lag) for t, lag in samples if t > t_end + 0.5]
    if len(during) < 3:
        return {"samples": len(during)}
    half = during[len(during) // 2:]
    n = len(half)
    mt = sum(t for t, _ in half) / n
    ml = sum(lag for _, lag in half) / n
    den = sum((t - mt) ** 2 for t, _ in half) or 1.0
    slope = sum((t - mt) * (lag - ml) for t, lag in half) / den
    drained = next((round(t - t_end, 1) for t, lag in after if lag <= max(50, rate // 100)), None)
    return {"samples": len(during), "max": max(lag for _, lag in during), "at_end": during[-1][1],
            "slope_msgs_per_s_second_half": round(slope, 1), "drain_s_after_end": drained}


def run_step(step: int, n_symbols: int, rate: int, producer: EventProducer, walk: Walk, book: Book,
             sampler: ProcSampler) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    book.step = step
    sampler.reset_peaks()
    before = sampler.sample()
    produced, elapsed = produce(producer, walk, book, n_symbols, rate, STEP_S, step)
    t_end = time.time()
    after = sampler.sample()
    peaks = dict(sampler.peak)
    # settle: the engine drains its lag, the last alerts and webhooks arrive
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        recent = [lag for s, t, lag in book.lag if s == step and t > t_end]
        if recent and recent[-1] <= max(50, rate // 100) and time.time() - t_end > 3:
            break
        time.sleep(0.5)  # waiting on other processes, bounded by the deadline
    lag = lag_summary([(t, lag) for s, t, lag in book.lag if s == step], rate, t_end)
    achieved = produced / elapsed
    slope = lag.get("slope_msgs_per_s_second_half")
    sustained = bool(achieved >= 0.95 * rate and slope is not None and slope < 0.02 * rate
                     and lag.get("at_end", 1e12) <= rate)
    alerts = [(t1 - t0) * 1000 for t0, t1, s in list(book.alerts.values()) if s == step]
    hooks = [(book.hooks[aid] - t0) * 1000 for aid, (t0, _, s) in list(book.alerts.items())
             if s == step and aid in book.hooks]
    fired = sum(1 for *_, s in book.alerts.values() if s == step)
    ticks_to_alerts = fired / produced if produced else 0
    return {
        "symbols": n_symbols, "offered_ticks_per_s": rate, "achieved_ticks_per_s": round(achieved),
        "ticks": produced, "seconds": round(elapsed, 1), "sustained": sustained, "engine_lag": lag,
        "alerts_fired": fired, "alerts_per_tick": round(ticks_to_alerts, 5), "webhooks_received": len(hooks),
        "latency_ms": {
            "tick_to_alert": rnd(percentiles(alerts)),
            "tick_to_webhook": rnd(percentiles(hooks)),
            "tick_to_browser": rnd(percentiles([v for s, v in book.socket if s == step])),
            "bar_close_to_metrics": rnd(percentiles([v for s, v, _ in book.bars if s == step])),
            "bar_end_to_metrics": rnd(percentiles([v for s, _, v in book.bars if s == step])),
        },
        "processes": usage(before, after, peaks),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def rnd(stats: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()}


# --- the ceiling: bare confluent-kafka on the same broker ---------------------------------------


def ceiling(settings: Settings) -> dict[str, Any]:
    topic = settings.topic("ceiling")
    admin = admin_client(settings)
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    walk = Walk(seed=11)
    now_ms = int(time.time() * 1000)
    enc = msgspec.json.Encoder()
    values = [(t.symbol.encode(), enc.encode(t)) for t in (walk.next(N_SYMBOLS_MAX, now_ms) for _ in range(CEILING_TICKS))]
    out: dict[str, Any] = {"what": "same tick messages (1,000 symbols), same producer settings as the stack "
                                    "(idempotent, acks=all, lz4, linger 5 ms), read_committed consumer; "
                                    f"{PARTITIONS} partitions, stack stopped"}
    try:
        for mode, rate, count in (("unpaced", None, CEILING_TICKS),
                                  ("paced", CEILING_PACED_RATE, int(CEILING_PACED_RATE * CEILING_PACED_S))):
            consumer = Consumer(consumer_config(settings, f"bench-e2e-ceiling-{uuid.uuid4().hex}",
                                                **{"fetch.wait.max.ms": 5}))
            consumer.assign([TopicPartition(topic, p, -1) for p in range(PARTITIONS)])  # from the end: only new
            consumer.poll(0.5)
            received = 0
            latencies: list[float] = []
            done = threading.Event()
            last = [0.0]

            def read() -> None:
                nonlocal received
                while not done.is_set() and received < count:
                    for m in consumer.consume(5000, 0.1):
                        if m.error() is None:
                            now = time.time()
                            received += 1
                            latencies.append(now * 1000 - m.timestamp()[1])
                            last[0] = now
                done.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            producer = Producer(producer_config(settings))
            start = time.time()
            if rate is None:
                for key, value in values[:count]:
                    while True:
                        try:
                            producer.produce(topic, value, key)
                            break
                        except BufferError:
                            producer.poll(0.01)
                    producer.poll(0)
            else:
                chunk = rate // 100
                for k in range(count // chunk):
                    delay = start + k / 100 - time.time()
                    if delay > 0:
                        time.sleep(delay)  # pacing the offered load
                    for key, value in values[k * chunk:(k + 1) * chunk]:
                        producer.produce(topic, value, key)
                    producer.poll(0)
            producer.flush(30)
            produced_s = time.time() - start
            done.wait(30)
            done.set()
            reader.join(5)
            consumer.close()
            out[mode] = {"messages": count, "received": received,
                         "produce_msgs_per_s": round(count / produced_s),
                         "round_trip_msgs_per_s": round(received / (last[0] - start)) if last[0] > start else None,
                         "latency_ms": rnd(percentiles(latencies))}
            if rate:
                out[mode]["offered_msgs_per_s"] = rate
    finally:
        admin.delete_topics([topic], operation_timeout=10)
    return out


# --- the run -----------------------------------------------------------------------------------


def seed_database(url: str, receiver_port: int) -> tuple[int, int, str]:
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
            return r.status == 200
    except OSError:
        return False


def main() -> dict[str, Any]:
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    prefix = f"bench-e2e-{uuid.uuid4().hex[:6]}."
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    web_port = free_port()
    group = f"{prefix}engine"
    stack = Stack.create(
        workdir, prefix, KAFKA_PARTITIONS=str(PARTITIONS), ALLOW_PRIVATE_WEBHOOKS="true",
        BAR_SECONDS=str(BAR_SECONDS), STREAM_LATENESS_MS=str(LATENESS_MS), ALERTS_STALE_AFTER_S="0",
        ALERTS_ENGINE_GROUP=group, ALERTS_DISPATCH_GROUP=f"{prefix}dispatch",
        ALERTS_TRANSACTIONAL_ID=f"{prefix}engine", LOG_LEVEL="WARNING", PORT=str(web_port),
        SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    settings = replace(load_settings(), kafka_topic_prefix=prefix, kafka_partitions=PARTITIONS)
    book = Book()
    stop = threading.Event()
    server = start_receiver(book)
    threads: list[threading.Thread] = []
    client = None
    results: dict[str, Any] = {}
    try:
        release = stack.run(procfile()["release"], timeout_s=180)
        if release.returncode != 0:
            raise RuntimeError(f"release failed: {release.stderr[-2000:]}")
        user_id, channel_id, token = seed_database(stack.env["DATABASE_URL"], server.server_address[1])
        rules = make_rules(channel_id, user_id)
        rule_producer = EventProducer(settings)
        for r in rules:
            rule_producer.produce(r)
        rule_producer.flush()
        for name in PROCESSES:
            stack.start(name)
        sampler = ProcSampler({name: p.popen.pid for name, p in stack.procs.items()})  # type: ignore[union-attr]
        for target, args in ((read_alerts, (settings, book, stop)), (read_metrics, (settings, book, stop)),
                             (sample_lag, (settings, group, book, stop, sampler))):
            threads.append(threading.Thread(target=target, args=args, daemon=True))
            threads[-1].start()
        wait_for(lambda: web_healthy(web_port), 90, "the web app's /healthz")
        client = connect_browser(web_port, token, book)
        producer = EventProducer(settings, **{"linger.ms": 1})
        walk = Walk()
        # warm-up at 1k ticks/s on 100 symbols until every path has carried something (Spark starts slowest)
        warm_deadline = time.monotonic() + 180
        book.step = -1
        warm_s = 0
        while time.monotonic() < warm_deadline:
            for name, proc in stack.procs.items():
                if not proc.alive():
                    raise RuntimeError(f"{name} exited during warm-up:\n{proc.tail()}")
            produce(producer, walk, book, 100, 1000, 2.0, -1)
            warm_s += 2
            if book.alert_events and book.hooks and book.bars and book.socket_updates and warm_s >= 10:
                break
        else:
            raise RuntimeError(f"warm-up did not complete: alerts={book.alert_events} hooks={len(book.hooks)} "
                               f"bars={len(book.bars)} socket updates={book.socket_updates}")
        results["warm_up_s"] = warm_s
        steps = []
        step = 0
        plan = [(n, r) for n in SYMBOL_SETS for r in RATES]
        for n_symbols, rate in plan:
            print(f"   step {step}: {n_symbols} symbols at {rate} ticks/s", flush=True)
            steps.append(run_step(step, n_symbols, rate, producer, walk, book, sampler))
            step += 1
        if steps[-1]["sustained"]:
            print(f"   step {step}: 1000 symbols at {EXTRA_RATE} ticks/s", flush=True)
            steps.append(run_step(step, 1000, EXTRA_RATE, producer, walk, book, sampler))
        for name, proc in stack.procs.items():
            if not proc.alive():
                steps[-1].setdefault("exited", []).append(name)
        results["steps"] = steps
        results["alert_events_total"] = book.alert_events
        results["webhook_posts_total"] = book.hook_posts
        results["browser"] = {"transport": client.transport(), "connects": book.socket_connects,
                              "updates": book.socket_updates, "disconnects": book.socket_disconnects[:10]}
    finally:
        stop.set()
        book.step = 10**6
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - teardown only
                pass
        stack.stop_all()
        for t in threads:
            t.join(10)
        server.shutdown()
    try:
        results["ceiling"] = ceiling(settings)
    finally:
        cleanup(settings, stack)
    sustained = [s["achieved_ticks_per_s"] for s in results["steps"] if s["sustained"]]
    best = max(sustained, default=0)
    ceiling_rate = results["ceiling"]["unpaced"]["round_trip_msgs_per_s"] or 0
    results["e2e_sustained_ticks_per_s_max"] = best
    results["ceiling_round_trip_msgs_per_s"] = ceiling_rate
    results["ratio_e2e_to_ceiling"] = round(best / ceiling_rate, 3) if ceiling_rate else None
    results["setup"] = {
        "processes": PROCESSES, "partitions": PARTITIONS, "rules": N_SYMBOLS_MAX * RULES_PER_SYMBOL,
        "firing_rules": FIRING_SYMBOLS * 3, "firing_rule_cooldown_s": COOLDOWN_S, "bar_seconds": BAR_SECONDS,
        "lateness_ms": LATENESS_MS, "step_s": STEP_S, "browser_rooms": ROOM_SYMBOLS,
        "left_out": "ingest (replaced by the paced producer), predict (TensorFlow; no measured path goes through it)",
    }
    results["load_avg_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    results["seconds_total"] = round(time.monotonic() - started)
    results["logs"] = str(workdir)
    return write_result("e2e", results, command=COMMAND)


def cleanup(settings: Settings, stack: Stack) -> None:
    admin = admin_client(settings)
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.kafka_topic_prefix)]
        if names:
            admin.delete_topics(names, operation_timeout=10)
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    try:
        import redis

        client = redis.Redis.from_url(settings.redis_url)
        keys = client.keys(f"*{stack.env['ALERTS_QUEUE']}*")
        if keys:
            client.delete(*keys)
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    shutil.rmtree(stack.workdir / "var", ignore_errors=True)  # Spark checkpoint; the logs stay


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
