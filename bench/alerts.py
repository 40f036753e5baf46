"""Alert engine and notification benchmark (``make bench`` -> bench/results/alerts.json).

Every figure is of the processes as they ship: the Procfile's commands, started
through tests/e2e/stack.py with only the topic prefix, groups, database and
queue given (bench/alerts_engine.py for the engine).

1. Engine capacity: 10,000 rules over 1,000 symbols (10 per symbol: levels,
   crossings, channels, moves), a backlog of ticks, ``python -m alerts engine``
   started on it; ticks/s from its first commit to the end of the backlog.
   Baseline in the same run: the same backlog with no rule watching it (Kafka,
   decode and transaction overhead alone).
2. Sustained rates: ticks paced at 10,000 and 20,000/s into one engine process;
   lag must not grow; tick -> alert p50/p99 with n, each alert's arrival on
   ``alerts`` (read_committed) minus the production of its triggering tick
   (after a 2 s warm-up at the same rate, not measured); then the highest
   sustained paced rate, found by search in the same process.
3. Alert -> webhook latency: ``python -m alerts dispatch`` and ``python -m alerts
   worker`` (Procfile lines) on PostgreSQL and Redis, firing alerts produced at
   50/s, arrival at a loopback HTTP receiver minus the alert's produce time.
"""

from __future__ import annotations

import http.server
import os
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from bench import alerts_engine
from bench.common import bench_topics, percentiles, write_result
from events import contract
from events.kafka import EventProducer, admin_client
from events.settings import Settings
from tests.e2e.stack import Stack

N_SYMBOLS = 1000
RULES_PER_SYMBOL = 10
WEBHOOK_ALERTS = 400
WEBHOOK_RATE = 50
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


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


def alert_to_webhook(settings: Settings, workdir: Path) -> dict[str, Any]:
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
    stack = Stack.create(workdir / "notify", settings.kafka_topic_prefix,
                         KAFKA_PARTITIONS=str(settings.kafka_partitions),
                         KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, DATABASE_URL=db_url,
                         ALLOW_PRIVATE_WEBHOOKS="true", ALERTS_DISPATCH_GROUP=f"bench-{uuid.uuid4().hex[:8]}",
                         LOG_LEVEL="WARNING")
    queue = stack.env["ALERTS_QUEUE"]
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
                                secret=WHSEC)
            s.add(ch)
            s.commit()
            user_id, channel_id = user.id, ch.id
        stack.start("worker")
        stack.start("dispatch")
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
        stack.stop_all()
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


def drop_topics(settings: Settings) -> None:
    """Every topic under the benchmark's prefix (the engine's changelog among them)."""
    admin = admin_client(settings)
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.kafka_topic_prefix)]
    if names:
        for f in admin.delete_topics(names, operation_timeout=10).values():
            try:
                f.result(30)
            except Exception:  # noqa: BLE001 - cleanup only
                pass


def main() -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    rules = make_rules(symbols())
    workdir = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    results: dict[str, Any] = {"rules": len(rules), "symbols": N_SYMBOLS, "engine_command": "python -m alerts engine"}
    for key, with_rules in (("engine_baseline_no_rules", []), ("engine_capacity", rules)):
        with bench_topics(partitions=6) as settings:
            try:
                results[key] = alerts_engine.capacity(settings, workdir / key, with_rules, Walk(symbols()).next)
            finally:
                drop_topics(settings)
    with bench_topics(partitions=6) as settings:
        try:
            paced = alerts_engine.sustained(settings, workdir / "sustained", rules, Walk(symbols(), seed=2).next)
            results["engine_sustained"] = paced["fixed"]
            results["engine_search"] = paced["search"]
            results["engine_sustained_max_ticks_per_s"] = paced["search"]["best_ticks_per_s"]
        finally:
            drop_topics(settings)
    with bench_topics(partitions=6) as settings:
        results["alert_to_webhook"] = alert_to_webhook(settings, workdir)
    a2w = results["alert_to_webhook"]["latency_ms"]
    results["aims"] = {
        **{f"tick_to_alert_p99_under_50_ms_at_{s['offered_ticks_per_s'] // 1000}k_ticks_per_s": bool(
            s["sustained"] and s["latency_ms"].get("p99", 1e9) < 50
            and s["achieved_ticks_per_s"] >= 0.95 * s["offered_ticks_per_s"]) for s in results["engine_sustained"]},
        "alert_to_webhook_p99_ms_under_100": bool(a2w.get("p99", 1e9) < 100),
    }
    base = results["engine_baseline_no_rules"].get("ticks_per_s")
    if base and results["engine_capacity"].get("ticks_per_s"):
        results["engine_capacity"]["vs_baseline"] = round(results["engine_capacity"]["ticks_per_s"] / base, 3)
    results["load_avg_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    results["notes"] = (
        "The engine is the Procfile's `python -m alerts engine` with its shipped settings (batch size, poll timeout, "
        "transaction cadence); only its topic prefix, group and transactional id are given. 2 cores shared by the "
        "broker, the engine, the tick producer and the latency reader (and whatever else runs on the machine). "
        f"Process logs: {workdir}")
    return write_result("alerts", results, command="PYTHONPATH=. .venv/bin/python -m bench alerts")


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
