"""Alert engine and notification benchmark (``make bench`` -> bench/results/alerts.json).

1. Engine throughput: 10,000 rules over 1,000 symbols (10 per symbol: levels,
   crossings, channels, moves), ticks pre-produced, the engine's
   consume-evaluate-produce loop with its Kafka transactions and changelog
   timed from its first to its last batch. Baseline in the same run: the same
   ticks through the same loop with no rule watching them (Kafka, decode and
   transaction overhead alone).
2. Tick -> alert latency: the engine as its own process (``python -m alerts
   engine``), ticks produced at a paced 10,000/s, each alert's arrival on
   ``alerts`` (read_committed) minus the moment its triggering tick was produced
   (after a 2 s warm-up at the same rate, not measured).
3. Alert -> webhook latency: ``python -m alerts dispatch`` and ``python -m alerts
   worker`` as processes on PostgreSQL and Redis, firing alerts produced at
   50/s, arrival at a loopback HTTP receiver minus the alert's produce time.
"""

from __future__ import annotations

import http.server
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer

from alerts.engine import EngineRunner, changelog_topic
from bench.common import bench_topics, percentiles, write_result
from events import contract
from events.kafka import EventProducer, admin_client, consumer_config
from events.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
N_SYMBOLS = 1000
RULES_PER_SYMBOL = 10
THROUGHPUT_TICKS = 100_000
LATENCY_RATE = 10_000
LATENCY_SECONDS = 8
WARMUP_SECONDS = 2.0
WEBHOOK_ALERTS = 400
WEBHOOK_RATE = 50


def symbols() -> list[str]:
    return [f"S{i:04d}" for i in range(N_SYMBOLS)]


def base_price(i: int) -> float:
    return 50.0 + (i % 200)


def make_rules(syms: list[str]) -> list[contract.Rule]:
    rules = []
    rid = 0
    for i, sym in enumerate(syms):
        p = base_price(i)
        conds: list[dict[str, Any]] = [
            {"series": "price", "op": "greater_than", "value": p * 1.010},
            {"series": "price", "op": "less_than", "value": p * 0.990},
            {"series": "price", "op": "crossing", "value": p * 1.014},
            {"series": "price", "op": "crossing_up", "value": p * 1.011},
            {"series": "price", "op": "crossing_down", "value": p * 0.989},
            {"series": "price", "op": "entering_channel", "lower": p * 1.010, "upper": p * 1.013},
            {"series": "price", "op": "outside_channel", "lower": p * 0.987, "upper": p * 1.013},
            {"series": "price", "op": "moving_up_pct", "value": 1.2, "window_s": 10},
            {"series": "price", "op": "moving_down_pct", "value": 1.2, "window_s": 10},
            {"series": "price", "op": "greater_than", "value": p * 1.014},
        ][:RULES_PER_SYMBOL]
        for cond in conds:
            rid += 1
            cond = {k: v for k, v in cond.items() if v is not None}
            rules.append(msgspec.convert({
                "type": "rule", "id": f"rule:{rid}:1", "ts": 1_795_000_000_000, "rule_id": rid, "version": 1,
                "user_id": 1, "symbols": [sym], "condition": cond, "frequency": "every_time"}, contract.Rule))
    return rules


class Walk:
    """Random-walk prices around each symbol's base price (0.2 % steps, pulled back to base)."""

    def __init__(self, syms: list[str], seed: int = 1) -> None:
        self.syms = syms
        self.rng = random.Random(seed)
        self.price = {s: base_price(i) for i, s in enumerate(syms)}
        self.base = dict(self.price)
        self.seq = 0

    def next(self, ts_ms: int) -> contract.Tick:
        sym = self.syms[self.seq % len(self.syms)]
        p = self.price[sym]
        p += p * 0.002 * self.rng.uniform(-1, 1) + (self.base[sym] - p) * 0.05
        self.price[sym] = p
        self.seq += 1
        return contract.Tick(id=f"b:{sym}:{self.seq}", ts=ts_ms, symbol=sym, price=round(p, 4), size=1.0,
                             source="bench", seq=self.seq)


def produce_rules(settings: Settings, rules: list[contract.Rule]) -> None:
    producer = EventProducer(settings)
    for r in rules:
        producer.produce(r)
    producer.flush()


def engine_throughput(settings: Settings, rules: list[contract.Rule] | None, n: int) -> dict[str, Any]:
    """Ticks per second through the engine loop, on pre-produced ticks."""
    if rules:
        produce_rules(settings, rules)
    walk = Walk(symbols())
    producer = EventProducer(settings)
    now = int(time.time() * 1000)
    for i in range(n):
        producer.produce(walk.next(now + i // 10))
    producer.flush()
    runner = EngineRunner(settings, group_id=f"bench-{uuid.uuid4().hex}", transactional_id=f"bench-{uuid.uuid4().hex}",
                          stale_after_s=0, batch_size=5000, poll_timeout_s=0.05)
    runner.start()
    first: float | None = None
    deadline = time.monotonic() + 120
    try:
        while runner.stats.consumed < n and time.monotonic() < deadline:
            got = runner.run_once()
            if got and first is None:
                first = time.perf_counter()
                first_batch = got
        elapsed = time.perf_counter() - (first or time.perf_counter())
    finally:
        runner.close()
    consumed = runner.stats.consumed - first_batch if first else 0
    return {"ticks": runner.stats.consumed, "ticks_per_s": round(consumed / elapsed) if elapsed else None,
            "alerts": runner.stats.alerts, "transactions": runner.stats.transactions,
            "rules_loaded": runner.stats.rules}


def spawn(args: list[str], settings: Settings, log: Path, **env: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ALERTS_"))}
    full.update({"PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                 "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix, "KAFKA_PARTITIONS": str(settings.kafka_partitions),
                 "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                 "ALLOW_PRIVATE_WEBHOOKS": "true", "TICKERBELL_VAR": str(settings.var_dir), "LOG_LEVEL": "WARNING",
                 **env})
    return subprocess.Popen([sys.executable, "-m", "alerts", *args], env=full, cwd=ROOT,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)


def tick_to_alert(settings: Settings, rules: list[contract.Rule], log: Path) -> dict[str, Any]:
    produce_rules(settings, rules)
    group = f"bench-{uuid.uuid4().hex}"
    engine_log = log.with_suffix(".engine.log")
    engine = spawn(["engine"], settings, engine_log, ALERTS_ENGINE_GROUP=group,
                   ALERTS_TRANSACTIONAL_ID=f"bench-{uuid.uuid4().hex}", ALERTS_STALE_AFTER_S="0", LOG_LEVEL="INFO")
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = threading.Event()
    consumer = Consumer(consumer_config(settings, f"bench-reader-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 2}))
    consumer.subscribe([settings.topic("alerts")])
    decoder = msgspec.json.Decoder(contract.Alert)

    def read() -> None:
        while not done.is_set():
            first = consumer.poll(0.05)  # returns at the first message (consume() would wait out its timeout)
            if first is None:
                continue
            for m in [first, *consumer.consume(1000, 0)]:
                if m.error() is None:
                    now = time.perf_counter()
                    a = decoder.decode(m.value())
                    t0 = sent.get(a.trigger_event_id)
                    if t0 is not None:
                        latencies.append((now - t0) * 1000)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    walk = Walk(symbols(), seed=2)
    producer = EventProducer(settings, **{"linger.ms": 1})
    try:
        # warm up: wait until the engine is consuming (its group committed a first offset)
        warm = contract.Tick(id="warmup", ts=int(time.time() * 1000), symbol="WARMUP", price=1.0, size=1.0,
                             source="bench", seq=0)
        producer.produce(warm)
        producer.flush()
        probe = Consumer({**settings.kafka_common(), "group.id": group})
        from confluent_kafka import TopicPartition

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = probe.committed([TopicPartition(settings.topic("ticks"), p) for p in range(settings.kafka_partitions)],
                                    timeout=5)
            if any(tp.offset >= 0 for tp in parts):
                break
            time.sleep(0.2)
        probe.close()
        chunk = LATENCY_RATE // 100
        start = time.perf_counter()
        produced = 0
        warmup_steps = int(WARMUP_SECONDS * 100)
        for step in range(warmup_steps + LATENCY_SECONDS * 100):
            target = start + step / 100
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the offered load
            if step == warmup_steps:  # the first transactions to each partition are slow: not measured
                measured_from = time.perf_counter()
                produced = 0
            now_ms = int(time.time() * 1000)
            for _ in range(chunk):
                t = walk.next(now_ms)
                if step >= warmup_steps:
                    sent[t.id] = time.perf_counter()
                producer.produce(t)
            producer.raw.poll(0)
            produced += chunk
        producer.flush()
        achieved = produced / (time.perf_counter() - measured_from)
        settle = time.monotonic() + 10
        last = -1
        while time.monotonic() < settle and len(latencies) != last:
            last = len(latencies)
            time.sleep(1.0)
    finally:
        done.set()
        reader.join(5)
        consumer.close()
        stop(engine)
    stats = percentiles(latencies)
    engine_stats = next((line.split("engine stopped: ", 1)[1] for line in
                         reversed(engine_log.read_text(errors="replace").splitlines()) if "engine stopped" in line), "")
    import re

    numbers = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", engine_stats)}
    txns = numbers.get("transactions") or 1
    breakdown = {
        "transactions": int(txns),
        "avg_eval_ms": round(numbers.get("busy_s", 0) / txns * 1000, 2),
        "avg_send_offsets_ms": round(numbers.get("offsets_s", 0) / txns * 1000, 2),
        "avg_commit_transaction_ms": round(numbers.get("end_txn_s", 0) / txns * 1000, 2),
        "max_batch_ms": round(numbers.get("max_batch_s", 0) * 1000, 1),
        "checkpoints": int(numbers.get("checkpoints", 0)),
        "state_records": int(numbers.get("state_records", 0)),
    }
    return {"engine_breakdown": breakdown, "offered_ticks_per_s": LATENCY_RATE, "achieved_ticks_per_s": round(achieved), "ticks": produced,
            "latency_ms": {k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}}


def alert_to_webhook(settings: Settings, log: Path) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from events import models
    from events.db import make_engine, upgrade

    admin_url = "postgresql+psycopg:///postgres?host=/var/run/postgresql"
    name = f"tb_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'create database "{name}"'))
    db_url = f"postgresql+psycopg:///{name}?host=/var/run/postgresql"
    received: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            now = time.perf_counter()
            with lock:
                received.setdefault(self.headers["webhook-id"].rsplit(".c", 1)[0], now)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen] = []
    try:
        upgrade(db_url)
        sessions = make_engine(db_url)
        from sqlalchemy.orm import Session

        with Session(sessions) as s:
            user = models.User(email="bench@example.com", password_hash="x")
            s.add(user)
            s.flush()
            ch = models.Channel(user_id=user.id, kind="webhook", name="bench",
                                target=f"http://127.0.0.1:{server.server_address[1]}/hook",
                                secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            s.add(ch)
            s.commit()
            user_id, channel_id = user.id, ch.id
        psettings = replace(settings, database_url=db_url)
        procs.append(spawn(["worker", "--concurrency", "8"], psettings, log, ALERTS_QUEUE=queue))
        procs.append(spawn(["dispatch"], psettings, log, ALERTS_QUEUE=queue,
                           ALERTS_DISPATCH_GROUP=f"bench-{uuid.uuid4().hex}"))
        producer = EventProducer(settings, **{"linger.ms": 0})
        sent: dict[str, float] = {}

        def alert(i: int) -> contract.Alert:
            return contract.Alert(id=f"alert:bench{i:05d}", ts=int(time.time() * 1000), rule_id=1, rule_version=1,
                                  user_id=user_id, state="firing", symbol="AAPL", trigger_event_id=f"t{i}",
                                  series="price", op="greater_than", value=151.0, threshold=150.0,
                                  channel_ids=[channel_id])

        # warm-up until one notification made the whole trip (processes started, connections open)
        deadline = time.monotonic() + 90
        i = 0
        while time.monotonic() < deadline:
            a = alert(i)
            producer.produce(a)
            producer.flush()
            i += 1
            wait_until = time.monotonic() + 1.0
            while time.monotonic() < wait_until and a.id not in received:
                time.sleep(0.02)
            if a.id in received:
                break
        start = time.perf_counter()
        for k in range(WEBHOOK_ALERTS):
            target = start + k / WEBHOOK_RATE
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the offered load
            a = alert(10_000 + k)
            sent[a.id] = time.perf_counter()
            producer.produce(a)
            producer.raw.flush(1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(k in received for k in sent):
            time.sleep(0.1)
        latencies = [(received[k] - t0) * 1000 for k, t0 in sent.items() if k in received]
    finally:
        for p in procs:
            stop(p)
        server.shutdown()
        with admin.connect() as conn:
            conn.execute(text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
        try:
            import redis

            client = redis.Redis.from_url(settings.redis_url)
            keys = client.keys(f"*{queue}*")
            if keys:
                client.delete(*keys)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    stats = percentiles(latencies)
    return {"alerts": len(sent), "delivered": len(latencies), "offered_alerts_per_s": WEBHOOK_RATE,
            "latency_ms": {k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}}


def main() -> dict:
    rules = make_rules(symbols())
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-alerts-{uuid.uuid4().hex[:6]}.log"
    results: dict[str, Any] = {"rules": len(rules), "symbols": N_SYMBOLS}
    for key, with_rules in (("engine_baseline_no_rules", None), ("engine_throughput", rules)):
        with bench_topics(partitions=6) as settings:
            try:
                results[key] = engine_throughput(settings, with_rules, THROUGHPUT_TICKS)
            finally:
                admin_client(settings).delete_topics([changelog_topic(settings)], operation_timeout=10)
    with bench_topics(partitions=6) as settings:
        try:
            results["tick_to_alert"] = tick_to_alert(settings, rules, log)
        finally:
            admin_client(settings).delete_topics([changelog_topic(settings)], operation_timeout=10)
    with bench_topics(partitions=6) as settings:
        results["alert_to_webhook"] = alert_to_webhook(settings, log)
    t2a = results["tick_to_alert"]["latency_ms"]
    a2w = results["alert_to_webhook"]["latency_ms"]
    results["aims"] = {
        "tick_to_alert_p99_ms_under_50_at_10k_ticks_per_s": bool(t2a.get("p99", 1e9) < 50
                                                                  and results["tick_to_alert"]["achieved_ticks_per_s"] >= 9_500),
        "alert_to_webhook_p99_ms_under_100": bool(a2w.get("p99", 1e9) < 100),
    }
    base = results["engine_baseline_no_rules"]["ticks_per_s"]
    if base:
        results["engine_throughput"]["vs_baseline"] = round(results["engine_throughput"]["ticks_per_s"] / base, 3)
    results["notes"] = (
        "2 cores shared with the other engineers' jobs and the broker: the engine process, the tick producer "
        "and the latency reader compete for them, and figures vary from run to run (1-minute load average at the end: "
        f"{os.getloadavg()[0]:.1f}). The engine is one process, one Kafka transaction per batch (alerts + offsets "
        "via send_offsets_to_transaction, plus a state checkpoint about once a second). Tail latency is set by "
        "the broker's transaction round trips: with librdkafka's default retry.backoff.ms (100 ms) some "
        "transactions waited ~100 ms more (p99 115-145 ms in earlier runs; most likely retries of a transaction "
        "begun while the coordinator was still completing the previous one); the engine sets it to 5 ms, which "
        "brought the longest batch from ~130 ms to ~35 ms. engine_breakdown shows where each batch's time goes; evaluation is "
        f"a few ms per batch. Process logs: {log}")
    return write_result("alerts", results)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
