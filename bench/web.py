"""Web stage benchmark: the bridge's coalescing and latency, the projector's throughput.

Bridge: 5 symbols ticking at about 5 000 ticks/s in total through Kafka; the
bridge's Socket.IO emits are read off the Redis message-queue channel (what
every web worker receives). Reported: updates per second per symbol (the
target is at most about 10) and the tick-to-Redis latency. Projector: bars
per second upserted into SQLite, committed before the offsets.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from typing import Any

import redis

from bench.common import bench_topics, percentiles, write_result
from events.contract import Bar, Tick, bar_id, tick_id
from events.db import session_factory, upgrade
from events.kafka import EventProducer, ShutdownFlag
from web.bridge import run_bridge
from web.projector import run_projector

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG"]


def bench_bridge(seconds: float = 6.0, rate_per_s: int = 5000) -> dict[str, Any]:
    with bench_topics(partitions=2) as settings:
        channel = f"bench-{uuid.uuid4().hex[:8]}"
        sub = redis.Redis.from_url(settings.redis_url).pubsub()  # type: ignore[no-untyped-call]
        sub.subscribe(channel)
        shutdown = ShutdownFlag()
        bridge = threading.Thread(target=run_bridge, args=(settings, shutdown),
                                  kwargs={"channel": channel, "group_id": f"bench-bridge-{uuid.uuid4().hex[:6]}",
                                          "offset_reset": "earliest", "redis_prefix": f"bench:{channel}:"},
                                  daemon=True)
        bridge.start()
        received: list[tuple[float, dict[str, Any]]] = []

        def listen() -> None:
            while not shutdown.is_set():
                msg = sub.get_message(timeout=0.2)
                if msg and msg["type"] == "message":
                    message = json.loads(msg["data"])
                    message["data"] = message["data"][0]  # emit args are a list; ours is one payload
                    received.append((time.time(), message))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        try:
            sent, elapsed, start = _produce(settings, received, shutdown, seconds, rate_per_s)
        finally:
            shutdown.set()
            bridge.join(30)
            listener.join(5)
            sub.close()
    return _summary(received, sent, seconds, elapsed)


def _produce(settings: Any, received: list[tuple[float, dict[str, Any]]], shutdown: ShutdownFlag, seconds: float,
             rate_per_s: int) -> tuple[int, float, float]:
    producer = EventProducer(settings)
    sent = 0
    start = time.time()
    while time.time() - start < seconds:
        batch_start = time.time()
        for _ in range(rate_per_s // 100):  # 10 ms slices
            symbol = SYMBOLS[sent % len(SYMBOLS)]
            now_ms = int(time.time() * 1000)
            producer.produce(Tick(id=tick_id("bench", symbol, sent), ts=now_ms, symbol=symbol,
                                  price=100 + (sent % 1000) / 100, size=1.0, source="bench", seq=sent))
            sent += 1
        producer.raw.poll(0)
        shutdown.wait(max(0.0, 0.01 - (time.time() - batch_start)))  # pacing to the target rate
    producer.flush()
    deadline = time.time() + 15
    while time.time() < deadline:  # wait until the last tick of each symbol has come through
        last = {u["data"]["symbol"]: u["data"]["ts_ms"] for _, u in received if u.get("event") == "update"}
        if len(last) == len(SYMBOLS) and min(last.values()) >= int(start * 1000 + seconds * 1000) - 50:
            break
        shutdown.wait(0.1)
    return sent, time.time() - start, start


def _summary(received: list[tuple[float, dict[str, Any]]], sent: int, seconds: float, elapsed: float) -> dict[str, Any]:
    per_second: dict[tuple[str, int], int] = defaultdict(int)
    latencies = []
    for at, msg in received:
        if msg.get("event") != "update":
            continue
        data = msg["data"]
        per_second[(data["symbol"], int(at))] += 1
        if data.get("ts_ms"):
            latencies.append((at * 1000) - data["ts_ms"])
    updates = sum(1 for _, m in received if m.get("event") == "update")
    return {
        "ticks_sent": sent, "tick_rate_per_s": round(sent / seconds), "symbols": len(SYMBOLS),
        "updates_emitted": updates, "updates_per_symbol_per_s_mean": round(updates / len(SYMBOLS) / elapsed, 2),
        "updates_per_symbol_per_s_max": max(per_second.values(), default=0),
        "tick_to_redis_latency_ms": {k: round(v, 1) for k, v in percentiles(latencies).items()},
    }


def bench_projector(n_bars: int = 20_000) -> dict[str, Any]:
    with bench_topics(partitions=2) as settings, tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = replace(settings, database_url=url)
        producer = EventProducer(settings)
        t0 = 1_790_000_000_000
        for i in range(n_bars):
            symbol = SYMBOLS[i % len(SYMBOLS)]
            start = t0 + (i // len(SYMBOLS)) * 60_000
            producer.produce(Bar(id=bar_id(symbol, 60, start), ts=start + 60_000, symbol=symbol, start_ms=start,
                                 bar_seconds=60, open=100.0, high=101.0, low=99.0, close=100.5, volume=1000.0,
                                 count=10, vwap=100.2, sma_5=100.1, sma_20=100.0))
        producer.flush()
        shutdown = ShutdownFlag()
        done = [0]

        def on_batch(n: int) -> None:
            done[0] += n
            if done[0] >= n_bars:
                shutdown.set()

        guard = threading.Timer(120, shutdown.set)
        guard.start()
        started = time.monotonic()
        consumed = run_projector(settings, session_factory(settings), shutdown, group_id=f"bench-proj-{uuid.uuid4().hex[:6]}",
                                 on_batch=on_batch, redis_prefix="bench:")
        elapsed = time.monotonic() - started
        guard.cancel()
    return {"bars": consumed, "seconds_incl_group_join": round(elapsed, 2), "bars_per_s_sqlite": round(consumed / elapsed)}


def main() -> dict[str, Any]:
    return write_result("web", {"bridge": bench_bridge(), "projector": bench_projector()},
                        command="PYTHONPATH=. .venv/bin/python -m bench web")


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
